//! The console's page, script and styles, in the binary: nothing is fetched from elsewhere at
//! run time, and nothing but `cargo` is needed to build it.

const INDEX: &[u8] = include_bytes!("../../../console/index.html");
const SCRIPT: &[u8] = include_bytes!("../../../console/app.js");
const LIB: &[u8] = include_bytes!("../../../console/lib.js");
const FLOWS: &[u8] = include_bytes!("../../../console/flows.js");
const LOGS: &[u8] = include_bytes!("../../../console/logs.js");
const KEYS: &[u8] = include_bytes!("../../../console/keys.js");
const REFERENCE: &[u8] = include_bytes!("../../../console/reference.js");
const STYLE: &[u8] = include_bytes!("../../../console/style.css");

/// The asset at a path: its content type and bytes.
pub(crate) fn find(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "/console" | "/console/" => Some(("text/html; charset=utf-8", INDEX)),
        "/console/app.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/console/lib.js" => Some(("text/javascript; charset=utf-8", LIB)),
        "/console/flows.js" => Some(("text/javascript; charset=utf-8", FLOWS)),
        "/console/logs.js" => Some(("text/javascript; charset=utf-8", LOGS)),
        "/console/keys.js" => Some(("text/javascript; charset=utf-8", KEYS)),
        "/console/reference.js" => Some(("text/javascript; charset=utf-8", REFERENCE)),
        "/console/style.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}
