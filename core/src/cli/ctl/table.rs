//! Output as `rabbitmqctl` prints it: an info line ("Listing users ..."), a header row of
//! column names, then one tab-separated row per object; or, with `--formatter json`, the
//! rows as a JSON array of objects holding just the chosen columns.
//!
//! Values are rendered the way rabbitmqctl renders them, so scripts written against it keep
//! working: booleans `true`/`false`, a missing or `null` value as an empty cell, a list as
//! `[a, b]` (tags), a table as `[{"key",value}]` with strings quoted inside (arguments), and
//! an empty list or table as `[]`.

use std::io::{self, Write};

use serde_json::{Map, Value};

/// How results are printed (the global flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// `-q`: no info line.
    pub quiet: bool,
    /// `-s`: no info line and no header row.
    pub silent: bool,
    /// `--formatter json`.
    pub json: bool,
}

impl Style {
    /// Prints the info line unless told to be quiet (to stdout, as rabbitmqctl does).
    pub fn info(&self, out: &mut dyn Write, line: &str) -> io::Result<()> {
        if self.quiet || self.silent || self.json {
            return Ok(());
        }
        writeln!(out, "{line}")
    }
}

/// Rows picked out of API objects by column name.
#[derive(Debug)]
pub struct Table {
    /// Column names (the header).
    pub columns: Vec<String>,
    /// One value per column per row; a field the object lacks is `null`.
    pub rows: Vec<Vec<Value>>,
    /// Per column: whether any object had the field at all (even as `null`).
    pub present: Vec<bool>,
}

impl Table {
    /// Picks `columns` out of each object. A column may be a dotted path into nested objects
    /// (`message_stats.publish`).
    pub fn pick(columns: &[String], objects: &[Value]) -> Table {
        let rows = objects
            .iter()
            .map(|object| columns.iter().map(|c| field(object, c)).collect())
            .collect();
        let present = columns
            .iter()
            .map(|c| objects.iter().any(|o| has_field(o, c)))
            .collect();
        Table {
            columns: columns.to_vec(),
            rows,
            present,
        }
    }

    /// Columns that no row has at all (probably a typo, or a field this server does not
    /// report); a field that is there as `null` counts as present. Empty when there are no
    /// rows.
    pub fn unknown_columns(&self) -> Vec<&str> {
        if self.rows.is_empty() {
            return Vec::new();
        }
        self.columns
            .iter()
            .zip(&self.present)
            .filter(|(_, present)| !**present)
            .map(|(c, _)| c.as_str())
            .collect()
    }

    /// Prints the table in `style`.
    pub fn print(&self, out: &mut dyn Write, style: Style) -> io::Result<()> {
        if style.json {
            return out.write_all(self.json().as_bytes());
        }
        out.write_all(self.render(!style.silent).as_bytes())
    }

    /// The rows as a JSON array, one object per line, keys in column order (a JSON map
    /// would sort them).
    pub fn json(&self) -> String {
        let lines: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let fields: Vec<String> = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(c, v)| format!("{}:{v}", Value::String(c.clone())))
                    .collect();
                format!("{{{}}}", fields.join(","))
            })
            .collect();
        if lines.is_empty() {
            return "[]\n".into();
        }
        format!("[\n{}\n]\n", lines.join(",\n"))
    }

    /// The tab-separated text, with or without the header row.
    pub fn render(&self, header: bool) -> String {
        let mut text = String::new();
        if header {
            text.push_str(&self.columns.join("\t"));
            text.push('\n');
        }
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|v| cell(&render(v))).collect();
            text.push_str(&cells.join("\t"));
            text.push('\n');
        }
        text
    }
}

/// The value at `name` in `object`: a plain field, else a dotted path.
pub fn field(object: &Value, name: &str) -> Value {
    if let Some(v) = object.get(name) {
        return v.clone();
    }
    let mut at = object;
    for part in name.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return Value::Null,
        }
    }
    at.clone()
}

fn has_field(object: &Value, name: &str) -> bool {
    if object.get(name).is_some() {
        return true;
    }
    let mut at = object;
    for part in name.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return false,
        }
    }
    true
}

/// Keeps a row on one line: a tab or newline inside a value would split it.
fn cell(text: &str) -> String {
    if !text.contains(['\t', '\n', '\r']) {
        return text.to_owned();
    }
    text.replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// A top-level value as rabbitmqctl shows it.
pub fn render(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|v| match v {
                    // A list of names (tags) is shown bare: [administrator, monitoring].
                    Value::String(s) => s.clone(),
                    other => nested(other),
                })
                .collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => table_text(map),
    }
}

/// A value inside a list or table: strings are quoted.
fn nested(value: &Value) -> String {
    match value {
        Value::Null => "undefined".into(),
        Value::String(s) => format!("\"{s}\""),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(nested).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(map) => table_text(map),
        other => other.to_string(),
    }
}

/// A table (arguments, client properties) as `[{"key",value},…]`.
fn table_text(map: &Map<String, Value>) -> String {
    let inner: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{{\"{k}\",{}}}", nested(v)))
        .collect();
    format!("[{}]", inner.join(","))
}

/// Tags as the API may give them: a list (3.9+) or a comma-separated string (older).
pub fn tag_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_render_as_rabbitmqctl_shows_them() {
        assert_eq!(render(&json!(true)), "true");
        assert_eq!(render(&json!(false)), "false");
        assert_eq!(render(&json!(null)), "");
        assert_eq!(render(&json!(12)), "12");
        assert_eq!(render(&json!("q")), "q");
        assert_eq!(render(&json!([])), "[]");
        assert_eq!(render(&json!({})), "[]");
        assert_eq!(
            render(&json!(["administrator", "monitoring"])),
            "[administrator, monitoring]"
        );
        assert_eq!(
            render(&json!({"x-max-length": 10, "x-queue-type": "classic"})),
            r#"[{"x-max-length",10},{"x-queue-type","classic"}]"#
        );
        assert_eq!(
            render(&json!({"a": {"b": [1, "c"]}, "n": null})),
            r#"[{"a",[{"b",[1,"c"]}]},{"n",undefined}]"#
        );
    }

    fn users() -> Vec<Value> {
        vec![
            json!({"name": "guest", "tags": ["administrator"], "limits": {}}),
            json!({"name": "bob", "tags": []}),
        ]
    }

    #[test]
    fn a_table_has_a_header_and_tab_separated_rows() {
        let t = Table::pick(&["name".into(), "tags".into()], &users());
        assert_eq!(
            t.render(true),
            "name\ttags\nguest\t[administrator]\nbob\t[]\n"
        );
        assert_eq!(t.render(false), "guest\t[administrator]\nbob\t[]\n");
    }

    #[test]
    fn missing_fields_are_empty_cells_and_reported() {
        let t = Table::pick(&["name".into(), "nope".into(), "limits".into()], &users());
        assert_eq!(t.render(false), "guest\t\t[]\nbob\t\t\n");
        assert_eq!(t.unknown_columns(), vec!["nope"]);
        assert!(
            Table::pick(&["nope".into()], &[])
                .unknown_columns()
                .is_empty()
        );
        let nulls = Table::pick(&["policy".into()], &[json!({"policy": null})]);
        assert!(nulls.unknown_columns().is_empty());
    }

    #[test]
    fn dotted_columns_reach_into_nested_objects() {
        let q = json!({"name": "q", "message_stats": {"publish": 4}});
        assert_eq!(field(&q, "message_stats.publish"), json!(4));
        assert_eq!(field(&q, "message_stats.nope"), Value::Null);
    }

    #[test]
    fn tabs_and_newlines_do_not_split_rows() {
        let t = Table::pick(&["name".into()], &[json!({"name": "a\tb\nc"})]);
        assert_eq!(t.render(false), "a\\tb\\nc\n");
    }

    #[test]
    fn json_output_holds_only_the_chosen_columns() {
        let t = Table::pick(&["tags".into(), "name".into()], &users());
        assert_eq!(
            t.json(),
            "[\n{\"tags\":[\"administrator\"],\"name\":\"guest\"},\n{\"tags\":[],\"name\":\"bob\"}\n]\n"
        );
        assert_eq!(Table::pick(&["name".into()], &[]).json(), "[]\n");
        let t = Table::pick(&["name".into()], &users());
        let mut out = Vec::new();
        t.print(
            &mut out,
            Style {
                json: true,
                ..Style::default()
            },
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, json!([{"name": "guest"}, {"name": "bob"}]));
    }

    #[test]
    fn tags_come_as_a_list_or_a_comma_string() {
        assert_eq!(tag_list(&json!(["a", "b"])), vec!["a", "b"]);
        assert_eq!(tag_list(&json!("a, b,")), vec!["a", "b"]);
        assert!(tag_list(&json!(null)).is_empty());
    }
}
