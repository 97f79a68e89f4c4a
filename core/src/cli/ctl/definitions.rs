//! `export_definitions` / `import_definitions`: `GET` and `POST /api/definitions`, the
//! same JSON document RabbitMQ's management UI downloads and uploads.
//!
//! A large file is imported in chunks: the whole file is read and checked here first
//! (JSON, an object, only kinds a definitions file has, each a list of objects), so a bad
//! file fails before anything is applied; then its objects go to the server in dependency
//! order (users, vhosts, permissions, …, exchanges, queues, bindings), `--chunk-size` at a
//! time, each chunk a partial document of its own (the API accepts those), with progress
//! on stderr. One request for a 20 000-queue file would show nothing for a long time and,
//! failing, leave no trace of how far it got; chunks say both. A file no larger than one
//! chunk is sent whole, as before.

use std::io::{Read, Write};

use serde_json::{Map, Value};

use super::http::{ApiError, path};
use super::progress::Progress;
use super::{Ctx, info, output_error, say};

/// How many objects each `POST` carries unless `--chunk-size` says otherwise.
pub const DEFAULT_CHUNK: usize = 500;

/// The object kinds of a definitions file, in the order they are imported: each may refer
/// to the kinds before it (a permission to a user and a vhost, a binding to an exchange
/// and a queue), never to one after.
const KINDS: [&str; 10] = [
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "exchanges",
    "queues",
    "bindings",
];

/// Keys that describe the file rather than hold objects; every chunk carries them.
const ABOUT: [&str; 4] = [
    "rabbit_version",
    "rabbitmq_version",
    "product_name",
    "product_version",
];

/// `export_definitions FILE` (`-` = stdout), pretty-printed.
pub fn export(ctx: &Ctx, file: &str, out: &mut dyn Write) -> Result<(), ApiError> {
    let to_stdout = file == "-";
    if !to_stdout {
        info(
            ctx,
            out,
            &format!("Exporting definitions in JSON to a file at \"{file}\" ..."),
        )?;
    }
    let definitions = ctx.client.get(&path(&["definitions"]))?;
    let mut text = serde_json::to_string_pretty(&definitions)
        .map_err(|e| ApiError::Other(format!("cannot format the definitions: {e}")))?;
    text.push('\n');
    if to_stdout {
        out.write_all(text.as_bytes()).map_err(output_error)
    } else {
        std::fs::write(file, text).map_err(|e| ApiError::Other(format!("cannot write {file}: {e}")))
    }
}

/// A definitions file, checked: its describing keys and its objects by kind, in import
/// order.
#[derive(Debug)]
pub struct Document {
    about: Map<String, Value>,
    kinds: Vec<(&'static str, Vec<Value>)>,
}

impl Document {
    /// Reads `text` (from `file`, named in errors) and checks its shape.
    pub fn parse(file: &str, text: &str) -> Result<Document, ApiError> {
        let bad = |why: String| ApiError::Other(format!("{file} is not JSON definitions: {why}"));
        let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let Value::Object(mut map) = value else {
            return Err(bad("expected an object".into()));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !KINDS.contains(&k.as_str()) && !ABOUT.contains(&k.as_str()))
        {
            return Err(bad(format!(
                "unknown key '{unknown}' (a definitions file holds {} and {})",
                KINDS.join(", "),
                ABOUT.join(", ")
            )));
        }
        let mut kinds = Vec::new();
        for kind in KINDS {
            let objects = match map.remove(kind) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(objects)) => objects,
                Some(_) => return Err(bad(format!("'{kind}' is not a list"))),
            };
            if let Some(i) = objects.iter().position(|o| !o.is_object()) {
                return Err(bad(format!("{kind}[{i}] is not an object")));
            }
            kinds.push((kind, objects));
        }
        Ok(Document { about: map, kinds })
    }

    /// How many objects the file holds.
    pub fn count(&self) -> usize {
        self.kinds.iter().map(|(_, objects)| objects.len()).sum()
    }

    /// The file cut into partial documents of at most `size` objects each, in import order
    /// (a chunk may end one kind and start the next). An empty file is one empty chunk, so
    /// the server still checks it.
    pub fn chunks(&self, size: usize) -> Vec<Chunk> {
        let size = size.max(1);
        let mut chunks = Vec::new();
        let mut current = Chunk::new(&self.about);
        for (kind, objects) in &self.kinds {
            for object in objects {
                if current.count == size {
                    let next = Chunk::new(&self.about);
                    chunks.push(std::mem::replace(&mut current, next));
                }
                current.push(kind, object.clone());
            }
        }
        chunks.push(current);
        chunks
    }
}

/// One request's worth of a file.
#[derive(Debug)]
pub struct Chunk {
    /// The partial document sent.
    pub body: Map<String, Value>,
    /// How many objects it carries.
    pub count: usize,
    /// How many of each kind, in import order.
    pub kinds: Vec<(&'static str, usize)>,
}

impl Chunk {
    fn new(about: &Map<String, Value>) -> Chunk {
        Chunk {
            body: about.clone(),
            count: 0,
            kinds: Vec::new(),
        }
    }

    fn push(&mut self, kind: &'static str, object: Value) {
        if let Value::Array(list) = self
            .body
            .entry(kind)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(object);
        }
        match self.kinds.last_mut() {
            Some((last, n)) if *last == kind => *n += 1,
            _ => self.kinds.push((kind, 1)),
        }
        self.count += 1;
    }

    /// The kinds it holds, for a progress line: `queues` or `vhosts, queues`.
    fn kind_names(&self) -> String {
        let names: Vec<&str> = self.kinds.iter().map(|(k, _)| *k).collect();
        names.join(", ")
    }
}

/// `users 3, vhosts 1, queues 2996`: per-kind counts of what was imported.
fn tally(done: &[(&'static str, usize)]) -> String {
    let mut merged: Vec<(&str, usize)> = Vec::new();
    for (kind, n) in done {
        match merged.last_mut() {
            Some((last, total)) if last == kind => *total += n,
            _ => merged.push((kind, *n)),
        }
    }
    let parts: Vec<String> = merged.iter().map(|(k, n)| format!("{k} {n}")).collect();
    parts.join(", ")
}

/// How `import_definitions` runs.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Objects per request.
    pub chunk_size: usize,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// `import_definitions FILE` (`-` = stdin).
pub fn import(
    ctx: &Ctx,
    file: &str,
    options: ImportOptions,
    out: &mut dyn Write,
) -> Result<(), ApiError> {
    let text = if file == "-" {
        info(
            ctx,
            out,
            "Importing definitions in JSON from standard input ...",
        )?;
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| ApiError::Other(format!("cannot read standard input: {e}")))?;
        text
    } else {
        info(
            ctx,
            out,
            &format!("Importing definitions in JSON from a file at \"{file}\" ..."),
        )?;
        std::fs::read_to_string(file)
            .map_err(|e| ApiError::Other(format!("cannot read {file}: {e}")))?
    };
    let name = if file == "-" { "standard input" } else { file };
    let document = Document::parse(name, &text)?;
    let quiet = ctx.style.quiet || ctx.style.silent;
    let mut progress = Progress::stderr(options.progress && !quiet);
    send(ctx, &document, options.chunk_size, &mut progress)?;
    if quiet || ctx.style.json {
        return Ok(());
    }
    say(out, "Successfully imported definitions.")
}

/// Posts `document` chunk by chunk, reporting after each; stops at the first refused one.
pub fn send<W: Write>(
    ctx: &Ctx,
    document: &Document,
    chunk_size: usize,
    progress: &mut Progress<W>,
) -> Result<(), ApiError> {
    let total = document.count();
    let chunks = document.chunks(chunk_size);
    let several = chunks.len() > 1;
    let mut imported = 0;
    let mut done: Vec<(&'static str, usize)> = Vec::new();
    for chunk in chunks {
        let sent = ctx
            .client
            .request("POST", &path(&["definitions"]))
            .send_json(&Value::Object(chunk.body.clone()));
        if let Err(cause) = sent {
            progress.finish();
            if !several {
                return Err(cause);
            }
            let done = if imported == 0 {
                "nothing was imported".to_owned()
            } else {
                format!("imported {imported} of {total} objects ({})", tally(&done))
            };
            return Err(ApiError::Partial {
                done: format!(
                    "import stopped: {done}; objects {}-{} ({}) were refused and nothing \
                     after them was sent",
                    imported + 1,
                    imported + chunk.count,
                    chunk.kind_names()
                ),
                cause: Box::new(cause),
            });
        }
        imported += chunk.count;
        done.extend(chunk.kinds.iter().copied());
        if several {
            progress.update(&format!(
                "imported {imported}/{total} objects ({})",
                chunk.kind_names()
            ));
        }
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::http::Client;
    use super::super::table::Style;
    use super::super::testing::fake_server;
    use super::*;

    fn ctx(base: String) -> Ctx {
        Ctx {
            client: Client::new(base, "guest", "guest", Duration::from_secs(5)),
            vhost: "/".into(),
            style: Style::default(),
        }
    }

    fn queues(n: usize) -> Vec<Value> {
        (0..n)
            .map(|i| json!({"name": format!("q{i}"), "vhost": "/"}))
            .collect()
    }

    fn file(doc: Value) -> String {
        doc.to_string()
    }

    #[test]
    fn a_bad_file_fails_before_anything_is_sent() {
        for (text, says) in [
            ("not json", "f.json is not JSON definitions: expected ident"),
            ("[]", "expected an object"),
            (r#"{"queues": [], "qeueus": []}"#, "unknown key 'qeueus'"),
            (r#"{"queues": {"name": "q"}}"#, "'queues' is not a list"),
            (
                r#"{"users": [], "queues": [{}, 3]}"#,
                "queues[1] is not an object",
            ),
        ] {
            let e = Document::parse("f.json", text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
        let ok = Document::parse(
            "f.json",
            r#"{"rabbit_version": "3.10.8", "policies": null, "queues": [{"name": "q"}]}"#,
        )
        .unwrap();
        assert_eq!(ok.count(), 1);
    }

    #[test]
    fn chunks_follow_import_order_and_carry_the_version() {
        // Written bindings first, queues last: chunks still go users → queues → bindings.
        let text = file(json!({
            "bindings": [{"source": "x", "destination": "q0"}],
            "queues": queues(4),
            "users": [{"name": "u"}],
            "rabbit_version": "3.10.8",
        }));
        let doc = Document::parse("f", &text).unwrap();
        let chunks = doc.chunks(2);
        let shape: Vec<Vec<(&str, usize)>> = chunks.iter().map(|c| c.kinds.clone()).collect();
        assert_eq!(
            shape,
            vec![
                vec![("users", 1), ("queues", 1)],
                vec![("queues", 2)],
                vec![("queues", 1), ("bindings", 1)],
            ]
        );
        for chunk in &chunks {
            assert_eq!(chunk.body["rabbit_version"], "3.10.8");
        }
        assert_eq!(chunks[1].body["queues"], json!(queues(3)[1..3]));
        assert_eq!(doc.chunks(10).len(), 1);
        assert_eq!(Document::parse("f", "{}").unwrap().chunks(10).len(), 1);
    }

    #[test]
    fn a_large_file_is_posted_in_chunks_with_progress() {
        let text = file(json!({"vhosts": [{"name": "v"}], "queues": queues(5)}));
        let doc = Document::parse("f", &text).unwrap();
        let (base, seen) = fake_server(vec![(204, ""), (204, ""), (204, "")]);
        let mut progress = Progress::new(Some(Vec::new()), false);
        send(&ctx(base), &doc, 2, &mut progress).unwrap();
        let printed = String::from_utf8(progress.into_inner().unwrap()).unwrap();
        assert_eq!(
            printed,
            "imported 2/6 objects (vhosts, queues)\nimported 4/6 objects (queues)\n\
             imported 6/6 objects (queues)\n"
        );
        let mut names = Vec::new();
        for _ in 0..3 {
            let request = seen.recv().unwrap();
            assert_eq!(
                (request.method.as_str(), request.target.as_str()),
                ("POST", "/api/definitions")
            );
            let body: Value = serde_json::from_str(&request.body).unwrap();
            for kind in ["vhosts", "queues"] {
                for o in body[kind].as_array().into_iter().flatten() {
                    names.push(o["name"].as_str().unwrap().to_owned());
                }
            }
        }
        assert_eq!(names, ["v", "q0", "q1", "q2", "q3", "q4"]);
    }

    #[test]
    fn a_small_file_is_one_request_without_progress() {
        let text = file(json!({"queues": queues(3)}));
        let doc = Document::parse("f", &text).unwrap();
        let (base, seen) = fake_server(vec![(204, "")]);
        let mut progress = Progress::new(Some(Vec::new()), false);
        send(&ctx(base), &doc, DEFAULT_CHUNK, &mut progress).unwrap();
        assert!(progress.into_inner().unwrap().is_empty());
        let body: Value = serde_json::from_str(&seen.recv().unwrap().body).unwrap();
        assert_eq!(body, json!({"queues": queues(3)}));
    }

    #[test]
    fn a_refused_chunk_stops_the_import_and_says_how_far_it_got() {
        let text = file(json!({"users": [{"name": "u"}], "queues": queues(5)}));
        let doc = Document::parse("f", &text).unwrap();
        let (base, seen) = fake_server(vec![
            (204, ""),
            (
                400,
                r#"{"error": "bad_request", "reason": "queues[0] (queue 'q3'): bad"}"#,
            ),
            (204, ""),
        ]);
        let mut progress = Progress::new(Some(Vec::new()), false);
        let e = send(&ctx(base), &doc, 3, &mut progress).unwrap_err();
        assert!(matches!(&e, ApiError::Partial { cause, .. } if cause.status() == Some(400)));
        let e = e.to_string();
        assert!(
            e.starts_with(
                "import stopped: imported 3 of 6 objects (users 1, queues 2); objects 4-6 \
                 (queues) were refused and nothing after them was sent: 400 Bad Request from "
            ),
            "{e}"
        );
        assert!(e.ends_with("queues[0] (queue 'q3'): bad"), "{e}");
        let printed = String::from_utf8(progress.into_inner().unwrap()).unwrap();
        assert_eq!(printed, "imported 3/6 objects (users, queues)\n");
        seen.recv().unwrap();
        seen.recv().unwrap();
        assert!(
            seen.try_recv().is_err(),
            "nothing is sent after a refused chunk"
        );
    }
}
