//! How the CLI prints: kubectl's plain tables (columns padded, three
//! spaces apart), and colour only when the stream is a terminal and
//! `NO_COLOR` is not set.

use std::io::IsTerminal;

/// The colours the CLI uses.
#[derive(Clone, Copy, Debug)]
pub enum Colour {
    /// Errors and failures.
    Red,
    /// Success.
    Green,
    /// Something in progress or worth a look.
    Yellow,
    /// Less important text.
    Dim,
}

fn colour_wanted(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in `colour` when standard output is a terminal.
pub fn paint(text: &str, colour: Colour) -> String {
    paint_if(colour_wanted(std::io::stdout().is_terminal()), text, colour)
}

/// `text` in `colour` when standard error is a terminal.
pub fn paint_err(text: &str, colour: Colour) -> String {
    paint_if(colour_wanted(std::io::stderr().is_terminal()), text, colour)
}

fn paint_if(wanted: bool, text: &str, colour: Colour) -> String {
    if !wanted {
        return text.to_owned();
    }
    let code = match colour {
        Colour::Red => "31",
        Colour::Green => "32",
        Colour::Yellow => "33",
        Colour::Dim => "2",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Prints an error line to standard error as `error: …`.
pub fn print_error(message: &str) {
    eprintln!("{} {message}", paint_err("error:", Colour::Red));
}

/// Rows laid out as kubectl lays them: each column as wide as its widest
/// cell, three spaces between columns, the last column unpadded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_pads_every_column_but_the_last_three_spaces_past_its_widest_cell() {
        let rows = vec![
            vec!["NAME".into(), "READY".into(), "AGE".into()],
            vec!["web-7d9".into(), "1/1".into(), "5s".into()],
        ];
        assert_eq!(
            table(&rows),
            "NAME      READY   AGE\nweb-7d9   1/1     5s\n"
        );
    }

    #[test]
    fn colour_is_off_when_not_a_terminal() {
        assert_eq!(paint_if(false, "ok", Colour::Green), "ok");
        assert_eq!(paint_if(true, "ok", Colour::Green), "\x1b[32mok\x1b[0m");
    }
}
