//! How the user names objects: a kind by any of kubectl's words
//! (`deployments`, `deployment`, `deploy`), an object as `KIND NAME` or
//! `KIND/NAME`; and where each lives in the REST API.

use berth_api::objects::Kind;

use super::api::Client;
use super::error::CliError;

/// The kind a word names, or an error listing the kinds there are.
pub fn kind(word: &str) -> Result<Kind, CliError> {
    Kind::from_word(word).ok_or_else(|| {
        let known: Vec<String> = Kind::all()
            .iter()
            .map(|k| match k.short_names().first() {
                Some(short) => format!("{} ({short})", k.plural()),
                None => k.plural().to_owned(),
            })
            .collect();
        CliError::Usage(format!(
            "there is no resource type {word:?}; Berth has {}",
            known.join(", ")
        ))
    })
}

/// One object: its kind and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// The kind.
    pub kind: Kind,
    /// The name.
    pub name: String,
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.name().to_lowercase(), self.name)
    }
}

/// The objects `KIND NAME...` or `KIND/NAME...` name.
pub fn named(words: &[String]) -> Result<Vec<Named>, CliError> {
    let Some(first) = words.first() else {
        return Err(CliError::Usage(
            "name an object: KIND NAME or KIND/NAME".into(),
        ));
    };
    if first.contains('/') {
        return words
            .iter()
            .map(|word| match word.split_once('/') {
                Some((k, name)) if !name.is_empty() => Ok(Named {
                    kind: kind(k)?,
                    name: name.to_owned(),
                }),
                _ => Err(CliError::Usage(format!(
                    "{word:?}: write every object as KIND/NAME, or the kind once and then names"
                ))),
            })
            .collect();
    }
    let kind = kind(first)?;
    if words.len() == 1 {
        return Err(CliError::Usage(format!(
            "name the {} too: {first} NAME",
            kind.name().to_lowercase()
        )));
    }
    Ok(words[1..]
        .iter()
        .map(|name| Named {
            kind,
            name: name.clone(),
        })
        .collect())
}

/// The one object the words name.
pub fn one(words: &[String]) -> Result<Named, CliError> {
    let mut all = named(words)?;
    if all.len() > 1 {
        return Err(CliError::Usage("name one object only".into()));
    }
    Ok(all.remove(0))
}

/// A kind's collection: `/api/v1/tenants/{tenant}/{plural}`, or
/// `/api/v1/nodes`.
pub fn collection(client: &Client, kind: Kind) -> Result<String, CliError> {
    if kind.namespaced() {
        client.tenant_path(&format!("/{}", kind.plural()))
    } else {
        Ok(format!("/api/v1/{}", kind.plural()))
    }
}

/// An object's path.
pub fn object(client: &Client, named: &Named) -> Result<String, CliError> {
    Ok(format!(
        "{}/{}",
        collection(client, named.kind)?,
        percent(&named.name)
    ))
}

/// A path segment or query value, escaped.
pub fn percent(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn objects_are_named_as_kubectl_names_them() {
        let both = named(&words(&["deploy", "web", "api"])).expect("named");
        assert_eq!(both.len(), 2);
        assert_eq!(both[1].to_string(), "deployment/api");
        let slashed = named(&words(&["svc/web", "po/web-1"])).expect("named");
        assert_eq!(slashed[1].kind, Kind::Pod);
    }

    #[test]
    fn an_unknown_kind_lists_the_kinds_there_are() {
        let error = kind("gadgets").expect_err("refused").to_string();
        assert!(error.contains("\"gadgets\""), "{error}");
        assert!(error.contains("deployments (deploy)"), "{error}");
    }
}
