//! Human lines or one JSON document, and progress on stderr for anything that waits.

use std::io::{IsTerminal, Write};

use serde_json::{Map, Value};

/// Where a command's results go.
pub struct Output {
    json: bool,
    record: Map<String, Value>,
}

impl Output {
    /// Human output, or JSON with `json`.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            record: Map::new(),
        }
    }

    /// Whether the output is JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A line for humans (ignored in JSON mode).
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.json {
            println!("{}", line.as_ref());
        }
    }

    /// Progress while waiting, on stderr (humans only), overwritten in place on a terminal.
    pub fn progress(&self, line: impl AsRef<str>) {
        if self.json {
            return;
        }
        let mut stderr = std::io::stderr();
        if stderr.is_terminal() {
            let _ = write!(stderr, "\r\x1b[2K{}", line.as_ref());
        } else {
            let _ = writeln!(stderr, "{}", line.as_ref());
        }
        let _ = stderr.flush();
    }

    /// Ends a progress line on a terminal.
    pub fn progress_done(&self) {
        if !self.json && std::io::stderr().is_terminal() {
            eprintln!();
        }
    }

    /// Every field of `doc` (a struct that serializes to an object) in the JSON document.
    pub fn set_all(&mut self, doc: &impl serde::Serialize) {
        match serde_json::to_value(doc) {
            Ok(Value::Object(fields)) => self.record.extend(fields),
            Ok(other) => {
                self.record.insert("value".to_owned(), other);
            }
            Err(e) => {
                self.record
                    .insert("output_error".to_owned(), Value::from(e.to_string()));
            }
        }
    }

    /// A field of the JSON document: `doc` serialized.
    pub fn set_doc(&mut self, key: &str, doc: &impl serde::Serialize) {
        let value = serde_json::to_value(doc).unwrap_or_else(|e| Value::from(format!("unserializable: {e}")));
        self.record.insert(key.to_owned(), value);
    }

    /// Appends `doc` serialized to an array field of the JSON document.
    pub fn push_doc(&mut self, key: &str, doc: &impl serde::Serialize) {
        let value = serde_json::to_value(doc).unwrap_or_else(|e| Value::from(format!("unserializable: {e}")));
        self.push(key, value);
    }

    /// A field of the JSON document.
    pub fn set(&mut self, key: &str, value: Value) {
        self.record.insert(key.to_owned(), value);
    }

    /// Appends to an array field of the JSON document.
    pub fn push(&mut self, key: &str, value: Value) {
        match self
            .record
            .entry(key.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(items) => items.push(value),
            other => *other = Value::Array(vec![value]),
        }
    }

    /// Prints the JSON document (JSON mode), with the outcome and exit code.
    pub fn finish(mut self, exit: crate::Exit, error: Option<&str>) {
        if self.json {
            self.set("ok", Value::Bool(exit == crate::Exit::Ok));
            self.set("exit_code", Value::from(exit as i32));
            if let Some(error) = error {
                self.set("error", Value::from(error));
            }
            println!("{}", Value::Object(self.record));
        } else if let Some(error) = error {
            eprintln!("error: {error}");
        }
    }
}
