//! Manifests as `-f` names them: a file, a directory of `.yaml`, `.yml`
//! and `.json` files (`-R` for its subdirectories too), or `-` for
//! standard input. Each keeps its name, so that every error can say which
//! file it is about.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::error::CliError;

/// One file's bytes.
pub struct Source {
    /// How the user named it (`-` shows as `<stdin>`).
    pub name: String,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// Whether it is JSON (by its extension) rather than YAML.
    pub json: bool,
}

impl Source {
    /// The content type the API reads it as.
    pub fn content_type(&self) -> &'static str {
        if self.json {
            "application/json"
        } else {
            "application/yaml"
        }
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read_file(path: &Path) -> Result<Source, CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(Source {
        name: path.display().to_string(),
        json: path.extension().and_then(|e| e.to_str()) == Some("json"),
        bytes,
    })
}

fn read_dir(dir: &Path, recursive: bool, into: &mut Vec<Source>) -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::File {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            if recursive {
                read_dir(&path, true, into)?;
            }
        } else if is_manifest(&path) {
            into.push(read_file(&path)?);
        }
    }
    Ok(())
}

/// Reads every file `-f` names, in order; a directory's files sorted by
/// name.
pub fn read_sources(names: &[String], recursive: bool) -> Result<Vec<Source>, CliError> {
    if names.is_empty() {
        return Err(CliError::Usage(
            "name the manifests with -f FILE, -f DIR or -f - (standard input)".into(),
        ));
    }
    let mut sources = Vec::new();
    for name in names {
        if name == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::File {
                    path: "<stdin>".into(),
                    reason: e.to_string(),
                })?;
            let json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
                || bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
            sources.push(Source {
                name: "<stdin>".into(),
                bytes,
                json,
            });
            continue;
        }
        let path = Path::new(name);
        if path.is_dir() {
            let before = sources.len();
            read_dir(path, recursive, &mut sources)?;
            if sources.len() == before {
                return Err(CliError::File {
                    path: name.clone(),
                    reason: "no .yaml, .yml or .json files here".into(),
                });
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

/// The documents of a file, as the server counts them: empty documents
/// skipped, a `List`'s items one each. An error names the file and the
/// document.
pub fn documents(source: &Source) -> Result<Vec<Value>, CliError> {
    let failed = |document: usize, reason: String| CliError::File {
        path: source.name.clone(),
        reason: format!("document {document}: {reason}"),
    };
    let mut documents = Vec::new();
    if source.json {
        let value: Value = serde_json::from_slice(&source.bytes)
            .map_err(|e| failed(1, format!("not valid JSON: {e}")))?;
        match value {
            Value::Array(items) => documents.extend(items),
            other => documents.push(other),
        }
    } else {
        let text = std::str::from_utf8(&source.bytes).map_err(|_| CliError::File {
            path: source.name.clone(),
            reason: "not UTF-8 text".into(),
        })?;
        for document in yaml_serde::Deserializer::from_str(text) {
            match Value::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) => documents.push(value),
                Err(error) => {
                    return Err(failed(
                        documents.len() + 1,
                        format!("not valid YAML: {error}"),
                    ));
                }
            }
        }
    }
    let mut flattened = Vec::new();
    for document in documents {
        match document {
            Value::Object(mut object)
                if object.get("kind").and_then(Value::as_str) == Some("List") =>
            {
                match object.remove("items") {
                    Some(Value::Array(items)) => flattened.extend(items),
                    _ => {
                        return Err(failed(
                            flattened.len() + 1,
                            "a List needs an items array".into(),
                        ));
                    }
                }
            }
            other => flattened.push(other),
        }
    }
    Ok(flattened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Source {
        Source {
            name: "app.yaml".into(),
            bytes: text.as_bytes().to_vec(),
            json: false,
        }
    }

    #[test]
    fn documents_are_counted_as_the_server_counts_them() {
        let source = yaml(
            "---\nkind: ConfigMap\n---\n---\nkind: List\nitems:\n- kind: Pod\n- kind: Service\n",
        );
        let kinds: Vec<String> = documents(&source)
            .expect("documents")
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Pod", "Service"]);
    }

    #[test]
    fn a_syntax_error_names_the_file_and_the_document() {
        let error = documents(&yaml("kind: ConfigMap\n---\nkind: [Pod\n"))
            .expect_err("refused")
            .to_string();
        assert!(
            error.starts_with("app.yaml: document 2: not valid YAML"),
            "{error}"
        );
    }
}
