//! Response compression: a pool's [`Compression`] (`gateway.<pool>.compression`) negotiates
//! an encoding with the client's `Accept-Encoding` ([`Compression::offer`], on the request)
//! and, when the response is worth it, encodes its body ([`Compression::apply`]): a body
//! already whole at once (its new length announced), a body still arriving piece by piece
//! ([`Compressing`], flushed whenever the instance pauses, so a stream of events is not held
//! back). Memory stays bounded: one encoder per response and at most [`EMIT_BYTES`] of output
//! held before it is sent.
//!
//! Never compressed: `HEAD` and range requests, `1xx`, `204`, `206` and `304` answers, a body
//! already encoded (`Content-Encoding`) or marked `Cache-Control: no-transform`, a media type
//! outside the pool's list, a body shorter than its `min_bytes`.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, RANGE, VARY,
};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::body::{Body, Frame};

use super::body::{ResponseBody, ResponseBodyError};
use crate::config::{CompressionConfig, Encoding};

/// gzip level: zlib's default, the usual choice of servers compressing on the fly.
const GZIP_LEVEL: u32 = 6;
/// Brotli quality: about gzip 6's speed with smaller output (quality 11 is for files
/// compressed once).
const BROTLI_QUALITY: i32 = 4;
/// Brotli window, log2 bytes: 256 KiB bounds an encoder's memory; web pages and JSON lists
/// rarely gain from a longer reach.
const BROTLI_WINDOW: i32 = 18;
/// Output held at most before it goes to the client, in bytes.
pub const EMIT_BYTES: usize = 16 * 1024;

/// A pool's compression policy, compiled from its configuration.
#[derive(Debug, Clone)]
pub struct Compression {
    enabled: bool,
    min_bytes: u64,
    /// In order of preference.
    encodings: Box<[Encoding]>,
    /// Exact media types, lower case.
    types: Box<[Box<str>]>,
    /// `type/` of each `type/*`, lower case.
    type_prefixes: Box<[Box<str>]>,
}

/// What a request allows: `None` from [`Compression::offer`] when its response is never
/// compressed; `Some(None)` when it could be but the client takes no encoding the pool
/// offers (the response still says `Vary: Accept-Encoding`).
pub type Offer = Option<Option<Encoding>>;

impl Compression {
    /// The policy of `config`.
    pub fn new(config: &CompressionConfig) -> Self {
        let (ranges, exact): (Vec<&String>, Vec<&String>) =
            config.content_types.iter().partition(|t| t.ends_with("/*"));
        Self {
            enabled: config.enabled && !config.encodings.is_empty(),
            min_bytes: config.min_bytes,
            encodings: config.encodings.iter().copied().collect(),
            types: exact
                .iter()
                .map(|t| t.to_ascii_lowercase().into())
                .collect(),
            type_prefixes: ranges
                .iter()
                .map(|t| t[..t.len() - 1].to_ascii_lowercase().into())
                .collect(),
        }
    }

    /// What the request of `head` allows: nothing when compression is off or the request is
    /// a `HEAD` or asks for a range; else the encoding its `Accept-Encoding` prefers among
    /// the pool's, if any. No allocation.
    pub fn offer(&self, head: &Parts) -> Offer {
        if !self.enabled || head.method == Method::HEAD || head.headers.contains_key(RANGE) {
            return None;
        }
        Some(negotiate(&self.encodings, &head.headers))
    }

    /// Compresses `response` when `offer` and the response allow it (see the module docs),
    /// adding `Vary: Accept-Encoding` to every response that could have been.
    pub fn apply(&self, offer: Offer, response: &mut Response<ResponseBody>) {
        let Some(encoding) = offer else { return };
        let status = response.status();
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::PARTIAL_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return;
        }
        let size = response.body().size_hint().exact();
        if size.is_some_and(|n| n == 0 || n < self.min_bytes) {
            return;
        }
        let headers = response.headers();
        if headers.contains_key(CONTENT_ENCODING)
            || headers.contains_key(CONTENT_RANGE)
            || !self.compressible(headers.get(CONTENT_TYPE))
            || no_transform(headers)
        {
            return;
        }
        add_vary(response.headers_mut());
        let Some(encoding) = encoding else { return };
        let body = std::mem::replace(response.body_mut(), ResponseBody::Full(None));
        let (body, length) = match body {
            ResponseBody::Full(Some(bytes)) => match encode_all(encoding, &bytes) {
                Ok(encoded) if encoded.len() < bytes.len() => {
                    let length = HeaderValue::from(encoded.len());
                    (ResponseBody::full(encoded), Some(length))
                }
                // Not smaller (or not encodable): sent as it is.
                _ => {
                    *response.body_mut() = ResponseBody::Full(Some(bytes));
                    return;
                }
            },
            ResponseBody::Upstream(_) => (
                ResponseBody::Compressed(Box::new(Compressing::new(body, encoding))),
                None,
            ),
            // Empty, or compressed already: as it is.
            other => {
                *response.body_mut() = other;
                return;
            }
        };
        *response.body_mut() = body;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(encoding.as_str()),
        );
        match length {
            Some(length) => {
                headers.insert(CONTENT_LENGTH, length);
            }
            None => {
                headers.remove(CONTENT_LENGTH);
            }
        }
        // Byte ranges of the original do not address the encoded body.
        headers.remove(ACCEPT_RANGES);
        weaken_etag(headers);
    }

    /// Whether a body of `content_type` is worth compressing.
    fn compressible(&self, content_type: Option<&HeaderValue>) -> bool {
        let Some(value) = content_type else {
            return false;
        };
        let essence = value.as_bytes();
        let end = essence
            .iter()
            .position(|&b| b == b';')
            .unwrap_or(essence.len());
        let essence = essence[..end].trim_ascii();
        self.types
            .iter()
            .any(|t| essence.eq_ignore_ascii_case(t.as_bytes()))
            || self.type_prefixes.iter().any(|prefix| {
                essence.len() > prefix.len()
                    && essence[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            })
    }
}

/// The encoding of `offered` (in order of preference) that `Accept-Encoding` weighs highest,
/// ties going to the earlier; `None` when it accepts none of them, or explicitly prefers
/// `identity`. Without the header, nothing is encoded (RFC 9110 §12.5.3 allows any coding
/// then, but a client that sends none rarely decodes one).
fn negotiate(offered: &[Encoding], headers: &HeaderMap) -> Option<Encoding> {
    let mut explicit = [None::<u16>; Encoding::ALL.len()];
    let (mut any, mut identity) = (None::<u16>, None::<u16>);
    for value in headers.get_all(ACCEPT_ENCODING) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let mut params = item.split(|&b| b == b';');
            let coding = params.next().unwrap_or_default().trim_ascii();
            if coding.is_empty() {
                continue;
            }
            let mut weight = 1000;
            for param in params {
                if let Some((name, value)) = split_once(param, b'=')
                    && name.trim_ascii().eq_ignore_ascii_case(b"q")
                {
                    weight = qvalue(value.trim_ascii()).unwrap_or(0);
                }
            }
            if coding == b"*" {
                any = Some(weight);
            } else if coding.eq_ignore_ascii_case(b"identity") {
                identity = Some(weight);
            } else if coding.eq_ignore_ascii_case(b"x-gzip") {
                explicit[index(Encoding::Gzip)] = Some(weight);
            } else if let Some(encoding) = Encoding::ALL
                .into_iter()
                .find(|e| coding.eq_ignore_ascii_case(e.as_str().as_bytes()))
            {
                explicit[index(encoding)] = Some(weight);
            }
        }
    }
    let mut best: Option<(Encoding, u16)> = None;
    for &encoding in offered {
        let weight = explicit[index(encoding)].or(any).unwrap_or(0);
        if weight > 0 && best.is_none_or(|(_, w)| weight > w) {
            best = Some((encoding, weight));
        }
    }
    let (encoding, weight) = best?;
    match identity {
        Some(preferred) if preferred > weight => None,
        _ => Some(encoding),
    }
}

fn index(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Br => 0,
        Encoding::Gzip => 1,
    }
}

fn split_once(bytes: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = bytes.iter().position(|&b| b == at)?;
    Some((&bytes[..i], &bytes[i + 1..]))
}

/// A qvalue (`0`, `0.5`, `1`, `1.000`) in thousandths; `None` when malformed.
fn qvalue(text: &[u8]) -> Option<u16> {
    let (whole, fraction) = match split_once(text, b'.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let thousandths = (0..3).fold(0u16, |q, i| {
        q * 10 + fraction.get(i).map_or(0, |&d| u16::from(d - b'0'))
    });
    match whole {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// `Cache-Control: no-transform`: the origin forbids intermediaries to change the body.
fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
    })
}

/// Adds `Accept-Encoding` to `Vary`, unless it is there already (or `Vary: *`).
fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|name| {
            let name = name.trim_ascii();
            name == b"*" || name.eq_ignore_ascii_case(b"accept-encoding")
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A strong `ETag` becomes weak: the encoded body is not byte-for-byte the tagged one.
fn weaken_etag(headers: &mut HeaderMap) {
    if let Some(tag) = headers.get(ETAG)
        && tag.as_bytes().starts_with(b"\"")
    {
        let mut weak = Vec::with_capacity(tag.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(tag.as_bytes());
        if let Ok(weak) = HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, weak);
        }
    }
}

/// `bytes` encoded whole.
fn encode_all(encoding: Encoding, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = Encoder::new(encoding, bytes.len());
    encoder.write(bytes)?;
    encoder.finish()
}

/// An encoder writing into a buffer the caller empties.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gzip(_) => "Encoder::Gzip",
            Self::Br(_) => "Encoder::Br",
        })
    }
}

impl Encoder {
    /// An encoder for a body of about `size_hint` bytes (0: unknown).
    fn new(encoding: Encoding, size_hint: usize) -> Self {
        let capacity = size_hint.clamp(256, EMIT_BYTES);
        match encoding {
            Encoding::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                Vec::with_capacity(capacity),
                flate2::Compression::new(GZIP_LEVEL),
            )),
            Encoding::Br => {
                let params = brotli::enc::BrotliEncoderParams {
                    quality: BROTLI_QUALITY,
                    lgwin: BROTLI_WINDOW,
                    size_hint,
                    ..Default::default()
                };
                Self::Br(Box::new(brotli::CompressorWriter::with_params(
                    Vec::with_capacity(capacity),
                    4096,
                    &params,
                )))
            }
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Self::Gzip(gzip) => gzip.write_all(data),
            Self::Br(br) => br.write_all(data),
        }
    }

    /// Encodes everything written so far into the output (a sync flush).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(gzip) => gzip.flush(),
            Self::Br(br) => br.flush(),
        }
    }

    /// The output so far, taken.
    fn take(&mut self) -> Vec<u8> {
        let out = match self {
            Self::Gzip(gzip) => gzip.get_mut(),
            Self::Br(br) => br.get_mut(),
        };
        std::mem::take(out)
    }

    fn pending(&mut self) -> usize {
        match self {
            Self::Gzip(gzip) => gzip.get_ref().len(),
            Self::Br(br) => br.get_ref().len(),
        }
    }

    /// Ends the stream: the rest of the output.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Self::Gzip(gzip) => gzip.finish(),
            Self::Br(br) => Ok(br.into_inner()),
        }
    }
}

/// A response body encoded as it streams from the instance.
#[derive(Debug)]
pub struct Compressing {
    inner: ResponseBody,
    /// `None` once the stream ended.
    encoder: Option<Encoder>,
    /// Input written since the last flush.
    unflushed: bool,
}

impl Compressing {
    fn new(inner: ResponseBody, encoding: Encoding) -> Self {
        Self {
            inner,
            encoder: Some(Encoder::new(encoding, 0)),
            unflushed: false,
        }
    }

    /// Whether the encoded stream has ended.
    pub fn is_done(&self) -> bool {
        self.encoder.is_none()
    }

    /// The next piece of encoded body: input is encoded as it comes; output goes out when
    /// [`EMIT_BYTES`] of it are ready, when the instance pauses (flushed, so nothing waits
    /// for more input) and at the end.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        loop {
            let Some(encoder) = self.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: the encoded body ends with its own.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    if let Err(error) = encoder.write(&data) {
                        self.encoder = None;
                        return Poll::Ready(Some(Err(Box::new(error))));
                    }
                    self.unflushed = true;
                    if encoder.pending() >= EMIT_BYTES {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(encoder.take())))));
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    self.encoder = None;
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(None) => {
                    let Some(encoder) = self.encoder.take() else {
                        return Poll::Ready(None);
                    };
                    return match encoder.finish() {
                        Ok(rest) if rest.is_empty() => Poll::Ready(None),
                        Ok(rest) => Poll::Ready(Some(Ok(Frame::data(Bytes::from(rest))))),
                        Err(error) => Poll::Ready(Some(Err(Box::new(error)))),
                    };
                }
                Poll::Pending => {
                    if !self.unflushed {
                        return Poll::Pending;
                    }
                    self.unflushed = false;
                    if let Err(error) = encoder.flush() {
                        self.encoder = None;
                        return Poll::Ready(Some(Err(Box::new(error))));
                    }
                    let out = encoder.take();
                    if out.is_empty() {
                        return Poll::Pending;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        headers
    }

    const BOTH: [Encoding; 2] = [Encoding::Br, Encoding::Gzip];

    #[test]
    fn accept_encoding_is_weighed_by_q_values() {
        for (value, expected) in [
            ("gzip, deflate, br", Some(Encoding::Br)),
            ("gzip", Some(Encoding::Gzip)),
            ("GZIP;Q=0.5", Some(Encoding::Gzip)),
            ("x-gzip", Some(Encoding::Gzip)),
            ("br;q=0.5, gzip;q=0.9", Some(Encoding::Gzip)),
            ("br;q=0, gzip", Some(Encoding::Gzip)),
            ("br;q=0, *", Some(Encoding::Gzip)),
            ("*", Some(Encoding::Br)),
            ("*;q=0.1, br;q=0", Some(Encoding::Gzip)),
            ("identity", None),
            ("", None),
            ("deflate", None),
            ("gzip;q=0", None),
            ("*;q=0", None),
            ("gzip;q=0.5, identity;q=0.9", None),
            ("gzip;q=0.9, identity;q=0.5", Some(Encoding::Gzip)),
            ("gzip;q=2", None),
            ("gzip;q=0.0001", None),
            ("gzip;q=abc, br;q=1.000", Some(Encoding::Br)),
        ] {
            assert_eq!(negotiate(&BOTH, &accept(value)), expected, "{value}");
        }
        assert_eq!(negotiate(&BOTH, &HeaderMap::new()), None);
        assert_eq!(
            negotiate(&[Encoding::Gzip, Encoding::Br], &accept("br, gzip")),
            Some(Encoding::Gzip),
            "ties go to the pool's preference"
        );
        assert_eq!(negotiate(&[Encoding::Gzip], &accept("br")), None);
    }

    #[test]
    fn qvalues_parse_to_thousandths() {
        for (text, q) in [
            ("1", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.125", Some(125)),
            ("1.000", Some(1000)),
            ("1.5", None),
            ("0.", Some(0)),
            ("", None),
        ] {
            assert_eq!(qvalue(text.as_bytes()), q, "{text}");
        }
    }

    fn policy() -> Compression {
        Compression::new(&CompressionConfig::default())
    }

    fn response(content_type: &str, body: &[u8]) -> Response<ResponseBody> {
        let mut response = Response::new(ResponseBody::full(body.to_vec()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        response
    }

    fn body_bytes(response: &Response<ResponseBody>) -> Bytes {
        match response.body() {
            ResponseBody::Full(Some(bytes)) => bytes.clone(),
            other => panic!("not a full body: {other:?}"),
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"{\"id\":1,\"name\":\"strata\"}"[i % 24])
            .collect()
    }

    #[test]
    fn whole_bodies_are_encoded_with_their_new_length() {
        let original = text(4000);
        for encoding in BOTH {
            let mut response = response("application/json; charset=utf-8", &original);
            response
                .headers_mut()
                .insert(ETAG, HeaderValue::from_static("\"v1\""));
            policy().apply(Some(Some(encoding)), &mut response);
            let headers = response.headers();
            assert_eq!(headers[CONTENT_ENCODING], encoding.as_str());
            assert_eq!(headers[VARY], "accept-encoding");
            assert_eq!(headers[ETAG], "W/\"v1\"");
            let encoded = body_bytes(&response);
            assert_eq!(headers[CONTENT_LENGTH], encoded.len().to_string().as_str());
            assert!(encoded.len() < original.len() / 10, "{}", encoded.len());
            let mut decoded = Vec::new();
            match encoding {
                Encoding::Gzip => flate2::read::GzDecoder::new(&encoded[..])
                    .read_to_end(&mut decoded)
                    .unwrap(),
                Encoding::Br => brotli::Decompressor::new(&encoded[..], 4096)
                    .read_to_end(&mut decoded)
                    .unwrap(),
            };
            assert_eq!(decoded, original);
        }
    }

    #[test]
    fn small_encoded_opaque_and_bodiless_answers_stay_as_they_are() {
        let policy = policy();
        let small = text(1023);
        let mut response = response("text/html", &small);
        policy.apply(Some(Some(Encoding::Gzip)), &mut response);
        assert!(!response.headers().contains_key(CONTENT_ENCODING));
        assert!(
            !response.headers().contains_key(VARY),
            "never compressed: no Vary"
        );

        let mut png = response_with("image/png", |_| {});
        policy.apply(Some(Some(Encoding::Gzip)), &mut png);
        assert!(!png.headers().contains_key(CONTENT_ENCODING));

        for (name, value) in [
            (CONTENT_ENCODING, "gzip"),
            (CACHE_CONTROL, "public, no-transform"),
            (CONTENT_RANGE, "bytes 0-99/4000"),
        ] {
            let mut response = response_with("text/plain", |h| {
                h.insert(name.clone(), HeaderValue::from_static(value));
            });
            policy.apply(Some(Some(Encoding::Br)), &mut response);
            assert_eq!(
                response
                    .headers()
                    .get(CONTENT_ENCODING)
                    .map(|v| v.to_str().unwrap()),
                (name == CONTENT_ENCODING).then_some("gzip"),
                "{name}"
            );
            assert_eq!(body_bytes(&response).len(), 4000);
        }
        for status in [
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::PARTIAL_CONTENT,
        ] {
            let mut response = response_with("text/plain", |_| {});
            *response.status_mut() = status;
            policy.apply(Some(Some(Encoding::Br)), &mut response);
            assert!(
                !response.headers().contains_key(CONTENT_ENCODING),
                "{status}"
            );
        }
        // A client that takes no encoding still learns that the answer varies.
        let mut response = response_with("text/plain", |_| {});
        policy.apply(Some(None), &mut response);
        assert!(!response.headers().contains_key(CONTENT_ENCODING));
        assert_eq!(response.headers()[VARY], "accept-encoding");
        // `Vary` naming `Accept-Encoding` already is left alone.
        let mut response = response_with("text/plain", |h| {
            h.insert(VARY, HeaderValue::from_static("Accept-Encoding, Cookie"));
        });
        policy.apply(Some(Some(Encoding::Gzip)), &mut response);
        assert_eq!(response.headers().get_all(VARY).iter().count(), 1);
    }

    fn response_with(content_type: &str, f: impl FnOnce(&mut HeaderMap)) -> Response<ResponseBody> {
        let mut response = response(content_type, &text(4000));
        f(response.headers_mut());
        response
    }

    #[test]
    fn offers_depend_on_the_request() {
        let head = |method: Method, headers: &[(&str, &str)]| {
            let mut request = http::Request::builder().method(method).uri("/");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(()).unwrap().into_parts().0
        };
        let policy = policy();
        assert_eq!(
            policy.offer(&head(Method::GET, &[("accept-encoding", "gzip")])),
            Some(Some(Encoding::Gzip))
        );
        assert_eq!(policy.offer(&head(Method::GET, &[])), Some(None));
        assert_eq!(
            policy.offer(&head(Method::HEAD, &[("accept-encoding", "gzip")])),
            None
        );
        assert_eq!(
            policy.offer(&head(
                Method::GET,
                &[("accept-encoding", "gzip"), ("range", "bytes=0-1")]
            )),
            None
        );
        let off = Compression::new(&CompressionConfig {
            enabled: false,
            ..CompressionConfig::default()
        });
        assert_eq!(
            off.offer(&head(Method::GET, &[("accept-encoding", "gzip")])),
            None
        );
    }

    #[test]
    fn media_types_match_exactly_or_by_their_type() {
        let policy = policy();
        for (value, ok) in [
            ("text/html; charset=utf-8", true),
            ("TEXT/CSS", true),
            ("application/json", true),
            ("Application/JSON ; charset=utf-8", true),
            ("image/svg+xml", true),
            ("application/jsonx", false),
            ("image/png", false),
            ("text/", false),
            ("application/octet-stream", false),
        ] {
            let value = HeaderValue::from_str(value).unwrap();
            assert_eq!(policy.compressible(Some(&value)), ok, "{value:?}");
        }
        assert!(!policy.compressible(None));
    }
}
