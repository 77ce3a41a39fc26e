//! Trace context of a request through an L7 proxy: W3C Trace Context (`traceparent`,
//! `tracestate`) and Zipkin B3 (`x-b3-*` headers or the single `b3` header), plus
//! `x-request-id`.
//!
//! [`TraceContext::begin`] reads the incoming headers and decides the proxy's part of the
//! trace: it continues the caller's trace (W3C first, then single `b3`, then multi-header B3;
//! a malformed header counts as absent) or starts one, sampled at the configured rate when
//! the caller did not decide; it gives the proxy's span a fresh id whose parent is the
//! caller's span; and it keeps the caller's `x-request-id` or makes a UUID v4.
//! [`TraceContext::inject`] then rewrites the request's headers for the upstream, so the
//! upstream's parent is the proxy's span: `traceparent` always, the B3 form(s) the request
//! came with, `tracestate` as received, and `x-request-id`.
//!
//! Everything here is pure: randomness comes from the caller's [`rand::Rng`].

use std::fmt;

use http::{HeaderMap, HeaderValue};
use rand::Rng;

/// The headers this module reads and writes.
pub mod headers {
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    pub const B3: &str = "b3";
    pub const B3_TRACE_ID: &str = "x-b3-traceid";
    pub const B3_SPAN_ID: &str = "x-b3-spanid";
    pub const B3_PARENT_SPAN_ID: &str = "x-b3-parentspanid";
    pub const B3_SAMPLED: &str = "x-b3-sampled";
    pub const B3_FLAGS: &str = "x-b3-flags";
    pub const REQUEST_ID: &str = "x-request-id";
}

/// A 16-byte trace id (never all zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id (never all zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl TraceId {
    /// Parses 32 lower- or upper-case hex digits, or 16 (a 64-bit B3 id, zero-padded on the
    /// left); all zero is invalid.
    pub fn parse(hex: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        match hex.len() {
            32 => decode_hex(hex, &mut out)?,
            16 => decode_hex(hex, &mut out[8..])?,
            _ => return None,
        }
        (out != [0; 16]).then_some(Self(out))
    }

    pub fn random(rng: &mut impl Rng) -> Self {
        loop {
            let id: [u8; 16] = rng.random();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }
}

impl SpanId {
    /// Parses 16 hex digits; all zero is invalid.
    pub fn parse(hex: &str) -> Option<Self> {
        let mut out = [0u8; 8];
        if hex.len() != 16 {
            return None;
        }
        decode_hex(hex, &mut out)?;
        (out != [0; 8]).then_some(Self(out))
    }

    pub fn random(rng: &mut impl Rng) -> Self {
        loop {
            let id: [u8; 8] = rng.random();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }
}

fn decode_hex(hex: &str, out: &mut [u8]) -> Option<()> {
    let bytes = hex.as_bytes();
    if bytes.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(())
}

/// The caller's position in a trace, as one header form carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// None: the caller left the decision to us (B3 without a sampling state).
    pub sampled: Option<bool>,
}

/// Parses a W3C `traceparent`: `<version>-<trace id>-<parent id>-<flags>`. Version `ff` is
/// invalid; a later version than `00` may carry more fields after a `-`.
pub fn parse_traceparent(value: &str) -> Option<Parent> {
    let mut parts = value.trim().splitn(5, '-');
    let version = parts.next()?;
    let (trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?);
    let extra = parts.next();
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || flags.len() != 2 {
        return None;
    }
    let mut version_byte = [0u8];
    decode_hex(version, &mut version_byte)?;
    if version_byte[0] == 0 && extra.is_some() {
        return None;
    }
    let mut flags_byte = [0u8];
    decode_hex(flags, &mut flags_byte)?;
    Some(Parent {
        trace_id: TraceId::parse(trace).filter(|_| trace.len() == 32)?,
        span_id: SpanId::parse(span)?,
        sampled: Some(flags_byte[0] & 1 == 1),
    })
}

/// What a single `b3` header says: ids with an optional sampling state, or only a
/// sampling decision (`0`, `1`, `d`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum B3Single {
    Context(Parent),
    DecisionOnly(bool),
}

/// Parses `b3: <trace id>-<span id>[-<sampling>[-<parent span id>]]` or `b3: <sampling>`.
pub fn parse_b3_single(value: &str) -> Option<B3Single> {
    let value = value.trim();
    let parts: Vec<&str> = value.split('-').collect();
    if parts.len() == 1 {
        return b3_sampling(parts[0]).map(B3Single::DecisionOnly);
    }
    if parts.len() > 4 || (parts.len() == 4 && SpanId::parse(parts[3]).is_none()) {
        return None;
    }
    let sampled = match parts.get(2) {
        Some(s) => Some(b3_sampling(s)?),
        None => None,
    };
    Some(B3Single::Context(Parent {
        trace_id: TraceId::parse(parts[0])?,
        span_id: SpanId::parse(parts[1])?,
        sampled,
    }))
}

/// A B3 sampling state: `1`/`d` (debug) sample, `0` does not; `true`/`false` as the
/// multi-header form allows.
fn b3_sampling(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "d" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Reads the multi-header B3 form (`x-b3-traceid` and `x-b3-spanid` required).
pub fn parse_b3_multi(headers: &HeaderMap) -> Option<Parent> {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let debug = get(headers::B3_FLAGS).is_some_and(|f| f.trim() == "1");
    let sampled = if debug {
        Some(true)
    } else {
        get(headers::B3_SAMPLED).and_then(b3_sampling)
    };
    Some(Parent {
        trace_id: TraceId::parse(get(headers::B3_TRACE_ID)?.trim())?,
        span_id: SpanId::parse(get(headers::B3_SPAN_ID)?.trim())?,
        sampled,
    })
}

/// The B3 forms a request carried, rewritten for the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct B3Forms {
    pub single: bool,
    pub multi: bool,
    /// The caller used 64-bit trace ids (16 hex digits): answered in kind.
    pub short_trace_id: bool,
}

/// Share of new traces to sample, from 0.0 (none) to 1.0 (all).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    rate: f64,
}

impl Sampler {
    /// From a percentage (Istio's convention: 0 to 100), clamped into range; NaN is 0.
    pub fn from_percent(percent: f64) -> Self {
        let rate = if percent.is_nan() {
            0.0
        } else {
            (percent / 100.0).clamp(0.0, 1.0)
        };
        Self { rate }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn decide(&self, rng: &mut impl Rng) -> bool {
        self.rate >= 1.0 || (self.rate > 0.0 && rng.random::<f64>() < self.rate)
    }
}

/// The proxy's part of one request's trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The proxy's own span, the parent the upstream sees.
    pub span_id: SpanId,
    /// The caller's span, None when the proxy started the trace.
    pub parent_span_id: Option<SpanId>,
    pub sampled: bool,
    /// The caller's `tracestate`, passed on unchanged (only with a W3C parent).
    pub tracestate: Option<String>,
    /// The caller's `x-request-id`, or a new UUID v4.
    pub request_id: String,
    /// B3 forms present on the request.
    pub b3: B3Forms,
}

impl TraceContext {
    /// Continues the request's trace, or starts one sampled by `sampler`.
    pub fn begin(headers: &HeaderMap, sampler: &Sampler, rng: &mut impl Rng) -> Self {
        let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let w3c = get(headers::TRACEPARENT).and_then(parse_traceparent);
        let single = get(headers::B3).and_then(parse_b3_single);
        let multi = parse_b3_multi(headers);
        let (parent, decision) = match (w3c, single, multi) {
            (Some(p), ..) => (Some(p), p.sampled),
            (None, Some(B3Single::Context(p)), _) => (Some(p), p.sampled),
            (None, Some(B3Single::DecisionOnly(d)), _) => (None, Some(d)),
            (None, None, Some(p)) => (Some(p), p.sampled),
            (None, None, None) => (None, None),
        };
        let b3_trace = get(headers::B3_TRACE_ID)
            .or_else(|| get(headers::B3).and_then(|v| v.split('-').next()));
        let b3 = B3Forms {
            single: matches!(single, Some(B3Single::Context(_))),
            multi: multi.is_some(),
            short_trace_id: b3_trace.is_some_and(|t| t.trim().len() == 16),
        };
        let tracestate = w3c.and(get(headers::TRACESTATE)).map(str::to_owned);
        Self {
            trace_id: parent.map_or_else(|| TraceId::random(rng), |p| p.trace_id),
            span_id: SpanId::random(rng),
            parent_span_id: parent.map(|p| p.span_id),
            sampled: decision.unwrap_or_else(|| sampler.decide(rng)),
            tracestate,
            request_id: request_id(headers, rng),
            b3,
        }
    }

    /// The `traceparent` naming the proxy's span.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    /// Rewrites `headers` (the request as sent upstream) so the upstream's parent is the
    /// proxy's span, in W3C form and in each B3 form the request came with.
    pub fn inject(&self, headers: &mut HeaderMap) {
        set(headers, headers::TRACEPARENT, &self.traceparent());
        match &self.tracestate {
            Some(state) => set(headers, headers::TRACESTATE, state),
            None => {
                headers.remove(headers::TRACESTATE);
            }
        }
        set(headers, headers::REQUEST_ID, &self.request_id);
        let sampled = if self.sampled { "1" } else { "0" };
        let trace = self.b3_trace_id();
        if self.b3.multi {
            set(headers, headers::B3_TRACE_ID, &trace);
            set(headers, headers::B3_SPAN_ID, &self.span_id.to_string());
            set(headers, headers::B3_SAMPLED, sampled);
            headers.remove(headers::B3_FLAGS);
            match self.parent_span_id {
                Some(p) => set(headers, headers::B3_PARENT_SPAN_ID, &p.to_string()),
                None => {
                    headers.remove(headers::B3_PARENT_SPAN_ID);
                }
            }
        }
        if self.b3.single {
            let parent = self
                .parent_span_id
                .map(|p| format!("-{p}"))
                .unwrap_or_default();
            set(
                headers,
                headers::B3,
                &format!("{trace}-{}-{sampled}{parent}", self.span_id),
            );
        }
    }

    fn b3_trace_id(&self) -> String {
        let full = self.trace_id.to_string();
        if self.b3.short_trace_id && self.trace_id.0[..8] == [0; 8] {
            full[16..].to_owned()
        } else {
            full
        }
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The request's `x-request-id` when it is printable and non-empty, else a new UUID v4.
fn request_id(headers: &HeaderMap, rng: &mut impl Rng) -> String {
    headers
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map_or_else(|| uuid_v4(rng), str::to_owned)
}

/// A random UUID, version 4 (RFC 9562), in its hyphenated lower-case form.
pub fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
