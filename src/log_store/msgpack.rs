//! A block's rows as MessagePack, byte for byte as `rmp_serde` writes them (a struct as an
//! array of its fields in order, integers in their shortest form), which still reads them.
//! Written by hand because the writer encodes every row the gateway serves: `rmp_serde`, a
//! serde call and an `io::Write` a value, cost ~1,800 instructions a row under callgrind
//! (`cargo bench --bench harness -- --instructions`, log store on vs off); these functions
//! append to the block directly.

use super::{Attempt, LogRow};

/// `rows` as one MessagePack array, appended to `out`.
pub(super) fn write_rows(rows: &[LogRow], out: &mut Vec<u8>) {
    array_len(out, rows.len());
    for row in rows {
        write_row(row, out);
    }
}

fn write_row(row: &LogRow, out: &mut Vec<u8>) {
    // Every field named: a field added to the row fails to compile here until it is written.
    let LogRow {
        request_id,
        time_ms,
        key,
        client_ip,
        api,
        method,
        path,
        model,
        provider,
        vendor_model,
        attempts,
        status,
        error,
        stream,
        cache,
        ttfb_ms,
        ttft_ms,
        duration_ms,
        prompt_tokens,
        cached_tokens,
        cache_write_tokens,
        completion_tokens,
        reasoning_tokens,
        cost,
        bytes_in,
        bytes_out,
        request_body,
        response_body,
    } = row;
    array_len(out, 28);
    str(out, request_id);
    int(out, *time_ms);
    opt_str(out, key);
    opt_str(out, client_ip);
    str(out, api);
    str(out, method);
    str(out, path);
    opt_str(out, model);
    opt_str(out, provider);
    opt_str(out, vendor_model);
    array_len(out, attempts.len());
    for attempt in attempts {
        write_attempt(attempt, out);
    }
    uint(out, u64::from(*status));
    opt_str(out, error);
    out.push(if *stream { 0xc3 } else { 0xc2 });
    opt_str(out, cache);
    opt_f64(out, *ttfb_ms);
    opt_f64(out, *ttft_ms);
    f64(out, *duration_ms);
    for tokens in [
        prompt_tokens,
        cached_tokens,
        cache_write_tokens,
        completion_tokens,
        reasoning_tokens,
    ] {
        match tokens {
            Some(n) => uint(out, *n),
            None => out.push(NIL),
        }
    }
    opt_f64(out, *cost);
    uint(out, *bytes_in);
    uint(out, *bytes_out);
    opt_str(out, request_body);
    opt_str(out, response_body);
}

fn write_attempt(attempt: &Attempt, out: &mut Vec<u8>) {
    let Attempt {
        provider,
        model,
        outcome,
        status,
        duration_ms,
    } = attempt;
    array_len(out, 5);
    str(out, provider);
    str(out, model);
    str(out, outcome);
    match status {
        Some(s) => uint(out, u64::from(*s)),
        None => out.push(NIL),
    }
    f64(out, *duration_ms);
}

const NIL: u8 = 0xc0;

fn array_len(out: &mut Vec<u8>, len: usize) {
    if len < 16 {
        out.push(0x90 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xdc);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn str(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 256 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn opt_str(out: &mut Vec<u8>, s: &Option<String>) {
    match s {
        Some(s) => str(out, s),
        None => out.push(NIL),
    }
}

fn uint(out: &mut Vec<u8>, n: u64) {
    if n < 128 {
        out.push(n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0xcc, n as u8]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn int(out: &mut Vec<u8>, n: i64) {
    match n {
        0.. => uint(out, n as u64),
        -32..0 => out.push(n as u8),
        -128..-32 => out.extend_from_slice(&[0xd0, n as u8]),
        -32_768..-128 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2_147_483_648..-32_768 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn f64(out: &mut Vec<u8>, x: f64) {
    out.push(0xcb);
    out.extend_from_slice(&x.to_be_bytes());
}

fn opt_f64(out: &mut Vec<u8>, x: Option<f64>) {
    match x {
        Some(x) => f64(out, x),
        None => out.push(NIL),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn full(text: &str, n: u64, i: i64) -> LogRow {
        let s = |k: &str| format!("{k}{text}");
        LogRow {
            request_id: s("req"),
            time_ms: i,
            key: Some(s("key")),
            client_ip: Some(s("ip")),
            api: Cow::Owned(s("api")),
            method: Cow::Owned(s("POST")),
            path: s("/v1/"),
            model: Some(s("m")),
            provider: Some(s("p")),
            vendor_model: Some(s("vm")),
            attempts: vec![
                Attempt {
                    provider: s("p"),
                    model: s("vm"),
                    outcome: Cow::Owned(s("timeout")),
                    status: Some(n as u16),
                    duration_ms: i as f64 / 7.0,
                };
                (n % 20) as usize
            ],
            status: n as u16,
            error: Some(s("e")),
            stream: n.is_multiple_of(2),
            cache: Some(s("hit")),
            ttfb_ms: Some(1.5),
            ttft_ms: Some(f64::MAX),
            duration_ms: -0.0,
            prompt_tokens: Some(n),
            cached_tokens: Some(n / 3),
            cache_write_tokens: Some(u64::MAX),
            completion_tokens: Some(0),
            reasoning_tokens: Some(127),
            cost: Some(1e-9),
            bytes_in: n,
            bytes_out: n / 2,
            request_body: Some(s("{}")),
            response_body: Some(s("")),
        }
    }

    #[test]
    fn rows_are_written_as_rmp_serde_writes_them() {
        let mut rows = vec![LogRow::default()];
        for (len, n, i) in [
            (0, 0, 0),
            (20, 127, -1),
            (40, 128, -32),
            (300, 255, -33),
            (70_000, 256, -128),
            (5, 65_535, -129),
            (5, 65_536, -32_768),
            (5, u32::MAX as u64, -32_769),
            (5, u32::MAX as u64 + 1, i32::MIN as i64),
            (5, u64::MAX, i32::MIN as i64 - 1),
            (5, 17, i64::MIN),
            (5, 3, i64::MAX),
            (5, 300, 1_764_000_000_000),
        ] {
            rows.push(full(&"é".repeat(len / 2), n, i));
        }
        let many: Vec<LogRow> = (0..70_000).map(|_| LogRow::default()).collect();
        for rows in [&rows[..], &rows[..1], &[], &many[..20], &many[..]] {
            let mut ours = Vec::new();
            write_rows(rows, &mut ours);
            assert_eq!(ours, rmp_serde::to_vec(rows).unwrap());
            let back: Vec<LogRow> = rmp_serde::from_slice(&ours).unwrap();
            assert_eq!(back.len(), rows.len());
        }
    }
}
