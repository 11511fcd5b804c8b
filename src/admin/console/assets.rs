//! The console's page, script and styles, in the binary: nothing is fetched from elsewhere at
//! run time, and nothing but `cargo` is needed to build it.

const INDEX: &[u8] = include_bytes!("../../../console/index.html");
const SCRIPT: &[u8] = include_bytes!("../../../console/app.js");
const STYLE: &[u8] = include_bytes!("../../../console/style.css");

/// The asset at a path: its content type and bytes.
pub(crate) fn find(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" | "/console" | "/console/" => Some(("text/html; charset=utf-8", INDEX)),
        "/console/app.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/console/style.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}
