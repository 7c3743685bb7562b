//! A line diff between two texts (two revisions' pod templates as YAML),
//! with unchanged runs cut down to the lines around each change.

/// One line of a diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffLine {
    /// `add`, `del`, `same`, or `skip` (a cut run of unchanged lines).
    pub kind: &'static str,
    /// The line, with its `+`, `-` or ` ` marker.
    pub text: String,
}

/// Unchanged lines kept on each side of a change.
const CONTEXT: usize = 3;

/// The lines that turn `old` into `new`; empty when they are the same.
pub fn diff(old: &str, new: &str) -> Vec<DiffLine> {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // Longest common subsequence, from the end, so the walk below goes
    // forwards. Templates are small (tens of lines).
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push(("same", a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] > lcs[i + 1][j]) {
            lines.push(("add", b[j]));
            j += 1;
        } else {
            lines.push(("del", a[i]));
            i += 1;
        }
    }
    if lines.iter().all(|(kind, _)| *kind == "same") {
        return Vec::new();
    }
    let changed: Vec<usize> = (0..lines.len()).filter(|&k| lines[k].0 != "same").collect();
    let near = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
    let mut out = Vec::new();
    let mut skipped = 0;
    for (k, (kind, text)) in lines.iter().enumerate() {
        if *kind == "same" && !near(k) {
            skipped += 1;
            continue;
        }
        if skipped > 0 {
            out.push(DiffLine {
                kind: "skip",
                text: format!("  … {skipped} unchanged lines"),
            });
            skipped = 0;
        }
        let marker = match *kind {
            "add" => '+',
            "del" => '-',
            _ => ' ',
        };
        out.push(DiffLine {
            kind,
            text: format!("{marker} {text}"),
        });
    }
    if skipped > 0 {
        out.push(DiffLine {
            kind: "skip",
            text: format!("  … {skipped} unchanged lines"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_image_shows_as_one_line_out_and_one_in() {
        let old = "a\nb\nimage: one\nc\n";
        let new = "a\nb\nimage: two\nc\n";
        let kinds: Vec<_> = diff(old, new)
            .into_iter()
            .map(|l| (l.kind, l.text))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("same", "  a".to_owned()),
                ("same", "  b".to_owned()),
                ("del", "- image: one".to_owned()),
                ("add", "+ image: two".to_owned()),
                ("same", "  c".to_owned()),
            ]
        );
    }

    #[test]
    fn equal_texts_have_no_diff_and_far_lines_are_cut() {
        assert!(diff("a\nb\n", "a\nb\n").is_empty());
        let old: String = (0..20).map(|n| format!("line {n}\n")).collect();
        let new = old.replace("line 19", "line nineteen");
        let lines = diff(&old, &new);
        assert_eq!(lines[0].kind, "skip");
        assert_eq!(lines[0].text, "  … 16 unchanged lines");
    }
}
