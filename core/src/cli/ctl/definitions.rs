//! `export_definitions` / `import_definitions`: `GET` and `POST /api/definitions`, the
//! same JSON document RabbitMQ's management UI downloads and uploads.

use std::io::{Read, Write};

use serde_json::Value;

use super::http::{ApiError, path};
use super::{Ctx, info, output_error, say};

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

/// `import_definitions FILE` (`-` = stdin). The file is checked to be JSON before it is
/// sent, so a wrong file gets a local error naming it.
pub fn import(ctx: &Ctx, file: &str, out: &mut dyn Write) -> Result<(), ApiError> {
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
    let definitions: Value = serde_json::from_str(&text)
        .map_err(|e| ApiError::Other(format!("{file} is not JSON definitions: {e}")))?;
    if !definitions.is_object() {
        return Err(ApiError::Other(format!(
            "{file} is not JSON definitions: expected an object"
        )));
    }
    ctx.client
        .request("POST", &path(&["definitions"]))
        .send_json(&definitions)?;
    if ctx.style.quiet || ctx.style.silent || ctx.style.json {
        return Ok(());
    }
    say(out, "Successfully imported definitions.")
}
