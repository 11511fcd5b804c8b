//! A JSON object's top-level members found, and the whole text checked, in one pass over its
//! bytes, for the stream events passed through to OpenAI clients: each is checked to be JSON
//! and has a member or two read or replaced. serde_json (a `RawObject` of `&RawValue`s, its
//! visitor and map access per member) cost ~4,800 instructions an event of a 50-chunk stream
//! under callgrind, a third of all the gateway spent on it.
//!
//! It is never more lenient than serde_json: what it takes serde_json takes (the tests compare
//! them on mutated inputs). It gives up, and the caller asks serde_json, on what it does not
//! handle: keys with escapes, nesting deeper than `MAX_DEPTH`, anything invalid (so errors are
//! still serde_json's).

/// Deeper nesting is left to serde_json (whose raw values take any depth).
const MAX_DEPTH: usize = 128;

/// Calls `each(key, value)` for each top-level member of the object `text` is, the value's raw
/// text as serde_json's `RawValue` holds it; None when `text` is not such an object, or is one
/// this scan leaves to serde_json.
pub fn members<'a>(text: &'a str, mut each: impl FnMut(&'a str, &'a str)) -> Option<()> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    if s.token()? != b'{' {
        return None;
    }
    if s.peek_token()? == b'}' {
        s.i += 1;
    } else {
        loop {
            if s.peek_token()? != b'"' {
                return None;
            }
            let key_start = s.i + 1;
            if s.string()? == Escapes::Some {
                return None;
            }
            let key = &text[key_start..s.i - 1];
            if s.token()? != b':' {
                return None;
            }
            s.peek_token()?;
            let value_start = s.i;
            s.value(1)?;
            each(key, &text[value_start..s.i]);
            match s.token()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

/// The raw values of the `wanted` top-level members of the object `text` is; None when it is
/// not one the scan reads, or names a wanted member twice (left to serde_json).
pub fn named<'a, const N: usize>(text: &'a str, wanted: [&str; N]) -> Option<[Option<&'a str>; N]> {
    let mut found = [None; N];
    let mut twice = false;
    members(text, |key, value| {
        if let Some(at) = wanted.iter().position(|w| *w == key) {
            twice |= found[at].replace(value).is_some();
        }
    })?;
    (!twice).then_some(found)
}

/// Whether a string held escapes (its raw text is then not its value).
#[derive(PartialEq)]
enum Escapes {
    None,
    Some,
}

/// Calls `each(element)` for each element of the array `text` is, as raw text; None as for
/// `members`.
pub fn elements<'a>(text: &'a str, mut each: impl FnMut(&'a str)) -> Option<()> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    if s.token()? != b'[' {
        return None;
    }
    if s.peek_token()? == b']' {
        s.i += 1;
    } else {
        loop {
            s.peek_token()?;
            let start = s.i;
            s.value(1)?;
            each(&text[start..s.i]);
            match s.token()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    /// The next byte that is not white space, consumed; compact JSON has none, and one
    /// comparison says so.
    #[inline(always)]
    fn token(&mut self) -> Option<u8> {
        let c = self.next()?;
        if c > b' ' {
            return Some(c);
        }
        self.i -= 1;
        self.ws();
        self.next()
    }

    /// The next byte that is not white space, left in place.
    #[inline(always)]
    fn peek_token(&mut self) -> Option<u8> {
        let c = self.peek()?;
        if c > b' ' {
            return Some(c);
        }
        self.ws();
        self.peek()
    }

    #[inline(never)]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c > b' ' || !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return;
            }
            self.i += 1;
        }
    }

    /// One value, containers and all, from its first byte, `depth` containers deep already:
    /// a loop over a stack of one bit per open container (set for an object), not recursion.
    fn value(&mut self, depth: usize) -> Option<()> {
        // Open containers inside this value, innermost in the low bit; at most 127 of them.
        let mut stack: u128 = 0;
        let mut open = 0usize;
        loop {
            // At a value.
            match self.peek_token()? {
                b'"' => {
                    self.string()?;
                }
                c @ (b'{' | b'[') => {
                    if depth + open + 1 > MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let object = c == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.peek_token()? == close {
                        self.i += 1;
                    } else {
                        stack = stack << 1 | u128::from(object);
                        open += 1;
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => return None,
            }
            // After a value: close containers until the next one is due.
            loop {
                if open == 0 {
                    return Some(());
                }
                let in_object = stack & 1 == 1;
                match (self.token()?, in_object) {
                    (b',', _) => {
                        if in_object {
                            self.key()?;
                        }
                        break;
                    }
                    (b'}', true) | (b']', false) => {
                        stack >>= 1;
                        open -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member's key and its colon, white space before each skipped.
    #[inline(always)]
    fn key(&mut self) -> Option<()> {
        if self.peek_token()? != b'"' {
            return None;
        }
        self.string()?;
        (self.token()? == b':').then_some(())
    }

    /// A string, from its opening quote (the caller has seen it); the text is UTF-8 already.
    #[inline(always)]
    fn string(&mut self) -> Option<Escapes> {
        self.i += 1;
        let mut escapes = Escapes::None;
        loop {
            // Eight bytes at a time, up to the first quote, backslash or control character.
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                let special = specials(u64::from_le_bytes(word.try_into().ok()?));
                if special != 0 {
                    self.i += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            match self.next()? {
                b'"' => return Some(escapes),
                b'\\' => self.escape()?,
                c if c < 0x20 => return None,
                _ => continue,
            }
            escapes = Escapes::Some;
        }
    }

    /// The rest of an escape, after its backslash.
    #[cold]
    fn escape(&mut self) -> Option<()> {
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => {
                let hex = self.b.get(self.i..self.i + 4)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                self.i += 4;
                Some(())
            }
            _ => None,
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }
}

/// The high bit of each of the eight bytes that is a control character, `"` or `\\` (Mycroft's
/// test for a byte below a bound): exact up to the first, which is all that is read of it.
fn specials(x: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let quote = x ^ (ONES * u64::from(b'"'));
    let backslash = x ^ (ONES * u64::from(b'\\'));
    (below(x, 0x20) | below(quote, 1) | below(backslash, 1)) & HIGH
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::openai::wire::RawObject;

    /// The members as serde_json reads them, when it does (`RawObject::parse` asks this scan
    /// first).
    fn serde(text: &str) -> Option<Vec<(String, String)>> {
        let obj: RawObject = serde_json::from_str(text).ok()?;
        Some(
            obj.members
                .iter()
                .map(|(k, v)| (k.to_string(), v.get().to_string()))
                .collect(),
        )
    }

    fn ours(text: &str) -> Option<Vec<(String, String)>> {
        let mut found = Vec::new();
        members(text, |k, v| found.push((k.to_string(), v.to_string())))?;
        Some(found)
    }

    const SAMPLES: &[&str] = &[
        r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764700000,"model":"gpt-4o-mini","system_fingerprint":null,"choices":[{"index":0,"delta":{"content":"Hel\"lo\\ \u00e9\n","role":"assistant"},"logprobs":null,"finish_reason":null}]}"#,
        r#" { "usage" : {"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"x":[1.5e-3,-0,0.25,1E+9,true,false,null,[],{}]} , "choices" : [ ] } "#,
        r#"{}"#,
        "{ \"a\" : [ 1 , { \"b\" : [ ] , \"c\" :\t{ } } ,\r\n\"d\" ] , \"e\" : { \"f\" : null } }",
        r#"{"a":"é ü 😀 plain text longer than eight bytes","b":-12.5e10}"#,
    ];

    fn serde_elements(text: &str) -> Option<Vec<String>> {
        let list: Vec<&serde_json::value::RawValue> = serde_json::from_str(text).ok()?;
        Some(list.iter().map(|v| v.get().to_string()).collect())
    }

    fn our_elements(text: &str) -> Option<Vec<String>> {
        let mut found = Vec::new();
        elements(text, |v| found.push(v.to_string()))?;
        Some(found)
    }

    #[test]
    fn elements_are_serde_jsons_elements() {
        for text in [" [ ] ", "[1, \"a\" ,{\"b\":[]} ,null]", "[[],[[]]]"] {
            assert!(our_elements(text).is_some(), "{text}");
            assert_eq!(our_elements(text), serde_elements(text), "{text}");
        }
        for text in ["[", "[1,]", "[,1]", "[1 2]", "{}", "[1]]", "[\"a]"] {
            assert_eq!(our_elements(text), None, "{text}");
            assert_eq!(serde_elements(text), None, "{text}");
        }
        for text in SAMPLES {
            let list = format!("[{text},{text}]");
            assert_eq!(our_elements(&list), serde_elements(&list));
        }
    }

    #[test]
    fn members_are_serde_jsons_members() {
        for text in SAMPLES {
            assert_eq!(ours(text), serde(text), "{text}");
            assert!(ours(text).is_some(), "{text}");
        }
    }

    #[test]
    fn invalid_text_is_refused_where_serde_json_refuses_it() {
        for text in [
            "",
            "[]",
            "{",
            r#"{"a"}"#,
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1}x"#,
            r#"{"a":1} {}"#,
            r#"{"a":[}"#,
            r#"{"a":{]}"#,
            r#"{'a':1}"#,
        ] {
            assert_eq!(ours(text), None, "{text}");
            assert_eq!(serde(text), None, "{text}");
        }
    }

    /// The top object is one level: a value nested `MAX_DEPTH - 1` deep in it is read, one
    /// more is left to serde_json.
    #[test]
    fn nesting_up_to_the_limit_is_read() {
        let nested = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        let deepest = nested(MAX_DEPTH - 1);
        assert_eq!(ours(&deepest), serde(&deepest));
        assert!(ours(&deepest).is_some());
        assert_eq!(ours(&nested(MAX_DEPTH)), None);
        let mixed = format!("{{\"a\":{}1{}}}", "[{\"b\":".repeat(60), "}]".repeat(60));
        assert_eq!(ours(&mixed), serde(&mixed));
        assert!(ours(&mixed).is_some());
    }

    #[test]
    fn what_it_leaves_to_serde_json_is_left() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        for text in [r#"{"mod\u0065l":"x"}"#, deep.as_str()] {
            assert_eq!(ours(text), None);
            assert!(serde(text).is_some());
        }
    }

    /// `sample` with each byte in turn replaced by each of `swaps`, removed, or doubled: the
    /// variants that are still UTF-8.
    pub(crate) fn single_changes(sample: &str, swaps: &[u8]) -> Vec<String> {
        let bytes = sample.as_bytes();
        let mut variants = Vec::new();
        for at in 0..bytes.len() {
            for &c in swaps {
                let mut v = bytes.to_vec();
                v[at] = c;
                variants.push(v);
            }
            let mut removed = bytes.to_vec();
            removed.remove(at);
            variants.push(removed);
            let mut doubled = bytes.to_vec();
            doubled.insert(at, bytes[at]);
            variants.push(doubled);
        }
        variants
            .into_iter()
            .filter_map(|v| String::from_utf8(v).ok())
            .collect()
    }

    /// Every sample changed a byte at a time: whatever this scan takes, serde_json takes, and
    /// reads the same.
    #[test]
    fn never_more_lenient_than_serde_json() {
        let swaps = b"\"\\{}[]:,-+.eE0123456789 \t\nx\x01tfnlu/";
        let mut taken = 0;
        for sample in SAMPLES {
            for text in single_changes(sample, swaps) {
                if let Some(found) = ours(&text) {
                    taken += 1;
                    assert_eq!(Some(found), serde(&text), "{text}");
                }
            }
        }
        assert!(taken > 1000, "the mutations exercised the scan: {taken}");
    }

    /// Two to four random changes at once (seeded), on objects and on arrays: the same promise.
    #[test]
    fn never_more_lenient_than_serde_json_under_several_changes() {
        let mut rng = fastrand::Rng::with_seed(26);
        let swaps = b"\"\\{}[]:,-+.eE0 \t\nx\x01tfnlu";
        let (mut objects, mut arrays) = (0, 0);
        for _ in 0..40_000 {
            let sample = SAMPLES[rng.usize(..SAMPLES.len())];
            let mut v = if rng.bool() {
                sample.as_bytes().to_vec()
            } else {
                format!("[{sample},{sample}]").into_bytes()
            };
            for _ in 0..rng.usize(2..=4) {
                if v.is_empty() {
                    break;
                }
                let at = rng.usize(..v.len());
                match rng.u8(..3) {
                    0 => v[at] = swaps[rng.usize(..swaps.len())],
                    1 => {
                        v.remove(at);
                    }
                    _ => v.insert(at, swaps[rng.usize(..swaps.len())]),
                }
            }
            let Ok(text) = std::str::from_utf8(&v) else {
                continue;
            };
            if let Some(found) = ours(text) {
                objects += 1;
                assert_eq!(Some(found), serde(text), "{text}");
            }
            if let Some(found) = our_elements(text) {
                arrays += 1;
                assert_eq!(Some(found), serde_elements(text), "{text}");
            }
        }
        assert!(
            objects > 500 && arrays > 500,
            "{objects} objects, {arrays} arrays taken"
        );
    }
}
