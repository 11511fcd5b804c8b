//! CSV export of the admin API's lists (`?format=csv` on `/admin/logs` and `/admin/usage`):
//! one line per item of `data`, the columns those of the first item. A cell a spreadsheet
//! would take for a formula (a client's `x-request-id` of `=HYPERLINK(…)`) is prefixed with
//! `'`, as OWASP advises, so exporting logs is not a way into an operator's spreadsheet.

use serde_json::Value;

/// The list's `data` as CSV; nested values (a row's attempts) as their JSON.
pub(super) fn from_list(list: &Value) -> String {
    let items = list["data"].as_array().map_or(&[][..], Vec::as_slice);
    let Some(Value::Object(first)) = items.first() else {
        return String::new();
    };
    let columns: Vec<&String> = first.keys().collect();
    let mut out = String::new();
    line(&mut out, columns.iter().map(|c| c.as_str().into()));
    for item in items {
        line(
            &mut out,
            columns.iter().map(|c| match &item[c.as_str()] {
                Value::Null => String::new().into(),
                Value::String(s) => s.as_str().into(),
                other => other.to_string().into(),
            }),
        );
    }
    out
}

fn line<'a>(out: &mut String, cells: impl Iterator<Item = std::borrow::Cow<'a, str>>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let guarded = match cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            // A negative number is a number, not a formula.
            true if cell.parse::<f64>().is_err() => format!("'{cell}").into(),
            _ => cell,
        };
        if guarded.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&guarded.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&guarded);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let list = serde_json::json!({"data": [
            {"id": "=HYPERLINK(\"x\")", "n": -3, "a": [1, 2], "none": null},
            {"id": "plain, with comma", "n": 4, "a": [], "none": null},
        ]});
        assert_eq!(
            super::from_list(&list),
            "id,n,a,none\r\n\"'=HYPERLINK(\"\"x\"\")\",-3,\"[1,2]\",\r\n\"plain, with comma\",4,[],\r\n"
        );
    }
}
