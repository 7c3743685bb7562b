//! `berth get KIND [NAME...] [-l SELECTOR] [-o wide|yaml|json|name] [-w]`
//! and `berth events [-w]`: kubectl's tables, or the objects as YAML or
//! JSON; `-w` goes on printing each change from the list's revision.

use berth_api::objects::Kind;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::api::{Body, Client, json_of};
use super::columns;
use super::error::CliError;
use super::output::table;
use super::resources::{self, Named};

/// How objects are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// kubectl's table.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// The objects as YAML.
    Yaml,
    /// The objects as JSON.
    Json,
    /// `kind/name` per object.
    Name,
}

/// `berth get`'s options.
#[derive(Clone, Debug, clap::Args)]
pub struct GetArgs {
    /// The kind (`pods`, `deploy`, `svc`…; several as `pods,services`;
    /// `all` for deployments, replica sets, pods and services), or
    /// KIND/NAME.
    pub resource: String,
    /// Names of objects of that kind (all of them when none is given).
    pub names: Vec<String>,
    /// Only objects whose labels match (`app=web,tier!=cache`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// How to print, and whether to go on.
    #[command(flatten)]
    pub shown: Shown,
    /// Leave the header out.
    #[arg(long)]
    pub no_headers: bool,
}

/// `berth events`' options.
#[derive(Clone, Debug, clap::Args)]
pub struct EventsArgs {
    /// Only the events of this object (KIND/NAME).
    #[arg(long = "for")]
    pub for_object: Option<String>,
    /// How to print, and whether to go on.
    #[command(flatten)]
    pub shown: Shown,
}

/// The output options of `get` and `events`.
#[derive(Clone, Debug, clap::Args)]
pub struct Shown {
    /// The output format.
    #[arg(
        short = 'o',
        long,
        value_enum,
        default_value = "table",
        hide_default_value = true
    )]
    pub output: Format,
    /// After the list, print every change.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// What one `get` prints: a kind, and the names asked for (none: all).
struct Request {
    kind: Kind,
    names: Vec<String>,
}

fn requests(args: &GetArgs) -> Result<Vec<Request>, CliError> {
    if args.resource.contains('/') {
        let mut words = vec![args.resource.clone()];
        words.extend(args.names.iter().cloned());
        let mut out: Vec<Request> = Vec::new();
        for named in resources::named(&words)? {
            match out.iter_mut().find(|r| r.kind == named.kind) {
                Some(request) => request.names.push(named.name),
                None => out.push(Request {
                    kind: named.kind,
                    names: vec![named.name],
                }),
            }
        }
        return Ok(out);
    }
    let mut kinds = Vec::new();
    for word in args.resource.split(',').filter(|w| !w.is_empty()) {
        if word == "all" {
            kinds.extend([Kind::Pod, Kind::Service, Kind::Deployment, Kind::ReplicaSet]);
        } else {
            kinds.push(resources::kind(word)?);
        }
    }
    if kinds.len() > 1 && !args.names.is_empty() {
        return Err(CliError::Usage(
            "names go with one kind; for several, write KIND/NAME for each".into(),
        ));
    }
    Ok(kinds
        .into_iter()
        .map(|kind| Request {
            kind,
            names: args.names.clone(),
        })
        .collect())
}

/// Runs `berth get`.
pub async fn run(args: GetArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let requests = requests(&args)?;
    let client = Client::new(global)?;
    if args.shown.watch && requests.len() > 1 {
        return Err(CliError::Usage("-w watches one kind at a time".into()));
    }
    let several = requests.len() > 1;
    let mut printed_any = false;
    let mut all_items = Vec::new();
    let mut last_revision = None;
    for request in &requests {
        let (items, revision) = read(&client, request, args.selector.as_deref()).await?;
        last_revision = revision;
        if matches!(args.shown.output, Format::Table | Format::Wide) {
            if items.is_empty() {
                continue;
            }
            if printed_any {
                println!();
            }
            printed_any = true;
            print!(
                "{}",
                render_table(
                    request.kind,
                    &items,
                    args.shown.output == Format::Wide,
                    several,
                    args.no_headers
                )
            );
        } else {
            all_items.extend(items.into_iter().map(|item| (request.kind, item)));
        }
    }
    match args.shown.output {
        Format::Table | Format::Wide => {
            if !printed_any && requests.iter().all(|r| r.names.is_empty()) && !args.shown.watch {
                eprintln!("No resources found{}.", where_(&client, &requests));
            }
        }
        Format::Name | Format::Yaml | Format::Json => {
            let single = requests.iter().all(|r| r.names.len() == 1) && all_items.len() == 1;
            print_items(&all_items, args.shown.output, single);
        }
    }
    if args.shown.watch {
        let request = &requests[0];
        let wanted = |object: &Value| {
            request.names.is_empty() || request.names.contains(&berth_web::view::name(object))
        };
        watch(
            &client,
            request.kind,
            &wanted,
            args.selector.as_deref(),
            last_revision,
            args.shown.output,
        )
        .await?;
    }
    Ok(())
}

fn where_(client: &Client, requests: &[Request]) -> String {
    match client.tenant() {
        Ok(tenant) if requests.iter().any(|r| r.kind.namespaced()) => {
            format!(" in tenant {tenant}")
        }
        _ => String::new(),
    }
}

/// Reads the objects a request names (all of the kind that match the
/// selector when it names none); answers them and the list's revision.
async fn read(
    client: &Client,
    request: &Request,
    selector: Option<&str>,
) -> Result<(Vec<Value>, Option<i64>), CliError> {
    if !request.names.is_empty() {
        let mut items = Vec::new();
        for name in &request.names {
            let named = Named {
                kind: request.kind,
                name: name.clone(),
            };
            items.push(client.get(&resources::object(client, &named)?).await?);
        }
        return Ok((items, None));
    }
    let mut path = resources::collection(client, request.kind)?;
    if let Some(selector) = selector {
        path.push_str(&format!("?labelSelector={}", resources::percent(selector)));
    }
    let list = client.get(&path).await?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok());
    let mut items = match list.get("items") {
        Some(Value::Array(items)) => items.clone(),
        _ => vec![],
    };
    if request.kind == Kind::Event {
        sort_events(&mut items);
    }
    Ok((items, revision))
}

/// Events oldest first, so that the newest is on the last line.
pub fn sort_events(events: &mut [Value]) {
    let now = chrono::Utc::now();
    events.sort_by_cached_key(|e| berth_web::view::event_row(e, now).last);
}

/// A kind's table: the header, then a row per object (names prefixed
/// with the kind when several kinds are shown).
pub fn render_table(
    kind: Kind,
    items: &[Value],
    wide: bool,
    prefixed: bool,
    no_headers: bool,
) -> String {
    let mut rows = Vec::with_capacity(items.len() + 1);
    if !no_headers {
        rows.push(
            columns::header(kind, wide)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        );
    }
    for item in items {
        let mut row = columns::row(kind, item, wide);
        if prefixed && kind != Kind::Event {
            row[0] = format!("{}/{}", kind.name().to_lowercase(), row[0]);
        }
        rows.push(row);
    }
    table(&rows)
}

/// Prints objects as `kind/name` lines, or as YAML or JSON: the one object
/// itself when `single`, otherwise a `List` of them.
fn print_items(items: &[(Kind, Value)], format: Format, single: bool) {
    if format == Format::Name {
        for (kind, item) in items {
            let name = berth_web::view::name(item);
            println!("{}", Named { kind: *kind, name });
        }
        return;
    }
    let value = match items {
        [(_, item)] if single => item.clone(),
        _ => json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": items.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>(),
        }),
    };
    print_object(&value, format);
}

fn print_object(value: &Value, format: Format) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
        _ => print!("{}", berth_web::view::yaml(value)),
    }
}

/// Prints every change of `kind` after `revision` until interrupted; a
/// stream the server ends is picked up again from the last revision seen.
async fn watch(
    client: &Client,
    kind: Kind,
    wanted: &dyn Fn(&Value) -> bool,
    selector: Option<&str>,
    mut revision: Option<i64>,
    format: Format,
) -> Result<(), CliError> {
    let header_widths = columns::header(kind, format == Format::Wide);
    loop {
        let mut path = format!("{}?watch=true", resources::collection(client, kind)?);
        if let Some(rv) = revision {
            path.push_str(&format!("&resourceVersion={rv}"));
        }
        if let Some(selector) = selector {
            path.push_str(&format!("&labelSelector={}", resources::percent(selector)));
        }
        let response = client.send(Method::GET, &path, &Body::Empty).await?;
        if !response.status().is_success() {
            json_of(response).await?;
            return Err(CliError::Failed("the watch was refused".into()));
        }
        let mut stream = response.bytes_stream();
        let mut buffer = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| CliError::Failed(format!("the watch broke off: {e}")))?;
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let object = &event["object"];
                if let Some(rv) = object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|rv| rv.parse().ok())
                {
                    revision = Some(rv);
                }
                match event["type"].as_str() {
                    Some("BOOKMARK") => continue,
                    Some("ERROR") => {
                        return Err(CliError::Failed(format!(
                            "the watch ended: {}",
                            object["message"].as_str().unwrap_or("the server said so")
                        )));
                    }
                    _ => {}
                }
                if !wanted(object) {
                    continue;
                }
                let name = berth_web::view::name(object);
                match format {
                    Format::Table | Format::Wide => {
                        let rows = vec![
                            header_widths.iter().map(|h| (*h).to_owned()).collect(),
                            columns::row(kind, object, format == Format::Wide),
                        ];
                        let text = table(&rows);
                        print!(
                            "{}",
                            text.lines()
                                .nth(1)
                                .map(|l| format!("{l}\n"))
                                .unwrap_or_default()
                        );
                    }
                    Format::Name => println!("{}", Named { kind, name }),
                    Format::Json => print_object(object, format),
                    Format::Yaml => {
                        println!("---");
                        print_object(object, format);
                    }
                }
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
        }
    }
}

/// Runs `berth events`.
pub async fn events(args: EventsArgs, global: &GlobalArgs) -> Result<(), CliError> {
    let client = Client::new(global)?;
    let about = match &args.for_object {
        Some(words) => Some(resources::one(std::slice::from_ref(words))?),
        None => None,
    };
    let events = Request {
        kind: Kind::Event,
        names: vec![],
    };
    let (items, revision) = read(&client, &events, None).await?;
    let items: Vec<Value> = items
        .into_iter()
        .filter(|e| about.as_ref().is_none_or(|about| concerns(e, about)))
        .collect();
    match args.shown.output {
        Format::Table | Format::Wide => {
            if items.is_empty() && !args.shown.watch {
                eprintln!("No events found{}.", where_(&client, &[events]));
            } else if !items.is_empty() {
                print!("{}", render_table(Kind::Event, &items, false, false, false));
            }
        }
        Format::Name | Format::Yaml | Format::Json => {
            let items: Vec<(Kind, Value)> = items.into_iter().map(|e| (Kind::Event, e)).collect();
            print_items(&items, args.shown.output, false);
        }
    }
    if args.shown.watch {
        let wanted = |event: &Value| about.as_ref().is_none_or(|about| concerns(event, about));
        watch(
            &client,
            Kind::Event,
            &wanted,
            None,
            revision,
            args.shown.output,
        )
        .await?;
    }
    Ok(())
}

/// Whether an event is about `object`.
pub fn concerns(event: &Value, object: &Named) -> bool {
    event["involvedObject"]["kind"].as_str() == Some(object.kind.name())
        && event["involvedObject"]["name"].as_str() == Some(object.name.as_str())
}
