//! Console forms: `application/x-www-form-urlencoded` and `multipart/form-data` (file
//! uploads), read whole (at most [`UPLOAD_LIMIT`](super::UPLOAD_LIMIT)) into [`FormData`].

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::{Payload, ServiceRequest};
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::error::Error;

/// The fields and files of a submitted form.
#[derive(Debug, Clone, Default)]
pub struct FormData {
    fields: Vec<(String, String)>,
    files: Vec<Upload>,
}

/// One uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub field: String,
    pub filename: String,
    pub data: Bytes,
}

/// Compares two secrets in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FormData {
    /// The first value of a field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field that must be there, trimmed.
    pub fn required(&self, name: &str) -> Result<&str, Error> {
        self.field(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::invalid(format!("the form field {name:?} is missing")))
    }

    /// The uploaded file of a field; an empty file input counts as no file.
    pub fn file(&self, name: &str) -> Result<&Upload, Error> {
        self.files
            .iter()
            .find(|f| f.field == name && !(f.data.is_empty() && f.filename.is_empty()))
            .ok_or_else(|| Error::invalid("choose a file to upload"))
    }

    /// Reads the body of a gated request.
    pub async fn read(req: &mut ServiceRequest) -> Result<FormData, Error> {
        let bytes = req
            .extract::<Bytes>()
            .await
            .map_err(|e| Error::invalid(format!("cannot read the form: {e}")))?;
        FormData::parse(&content_type(req.headers()), &bytes)
    }

    pub fn parse(content_type: &str, body: &Bytes) -> Result<FormData, Error> {
        let lower = content_type.to_ascii_lowercase();
        if lower.starts_with("application/x-www-form-urlencoded") {
            let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| Error::invalid(format!("malformed form: {e}")))?;
            Ok(FormData {
                fields,
                files: Vec::new(),
            })
        } else if lower.starts_with("multipart/form-data") {
            multipart(content_type, body)
        } else if body.is_empty() {
            Ok(FormData::default())
        } else {
            Err(Error::invalid(format!(
                "expected a form (application/x-www-form-urlencoded or multipart/form-data), \
                 got {content_type:?}"
            )))
        }
    }
}

impl FromRequest for FormData {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<FormData, Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The gate already read the form of a session's request (for its CSRF token).
        if let Some(f) = req.extensions().get::<FormData>() {
            let f = f.clone();
            return Box::pin(async move { Ok(f) });
        }
        let ct = content_type(req.headers());
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|e| {
                if e.as_response_error().status_code()
                    == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                {
                    Error::PayloadTooLarge(format!("the form is too large: {e}"))
                } else {
                    Error::invalid(format!("cannot read the form: {e}"))
                }
            })?;
            FormData::parse(&ct, &bytes)
        })
    }
}

fn content_type(headers: &actix_web::http::header::HeaderMap) -> String {
    headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A `name="value"` parameter of a Content-Disposition header.
fn param(disposition: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let mut rest = disposition;
    loop {
        let at = rest.find(&key)?;
        // `name=` must not be the tail of `filename=`.
        let starts_word = at == 0 || matches!(rest.as_bytes()[at - 1], b' ' | b';');
        let after = &rest[at + key.len()..];
        if starts_word {
            return after.find('"').map(|end| after[..end].to_string());
        }
        rest = after;
    }
}

fn multipart(content_type: &str, body: &Bytes) -> Result<FormData, Error> {
    let bad = |why: &str| Error::invalid(format!("malformed multipart form: {why}"));
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| bad("no boundary"))?;
    let delim = format!("--{boundary}").into_bytes();
    let next_delim = format!("\r\n--{boundary}").into_bytes();
    let mut form = FormData::default();
    let mut pos = find(body, &delim, 0).ok_or_else(|| bad("no first boundary"))? + delim.len();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(form);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return Err(bad("a boundary is not followed by a line end"));
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or_else(|| bad("a part has no headers"))?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| bad("part headers are not UTF-8"))?;
        let data_start = head_end + 4;
        let data_end =
            find(body, &next_delim, data_start).ok_or_else(|| bad("a part does not end"))?;
        let disposition = head
            .split("\r\n")
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or_else(|| bad("a part has no Content-Disposition"))?;
        let name = param(disposition, "name").ok_or_else(|| bad("a part has no name"))?;
        let data = body.slice(data_start..data_end);
        match param(disposition, "filename") {
            Some(filename) => form.files.push(Upload {
                field: name,
                filename,
                data,
            }),
            None => form.fields.push((
                name,
                String::from_utf8(data.to_vec()).map_err(|_| bad("a field is not UTF-8"))?,
            )),
        }
        pos = data_end + next_delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_and_multipart() {
        let f = FormData::parse(
            "application/x-www-form-urlencoded",
            &Bytes::from_static(b"csrf=abc&va=Lab+One&days=30"),
        )
        .unwrap();
        assert_eq!(f.field("va"), Some("Lab One"));
        assert_eq!(f.required("days").unwrap(), "30");
        assert!(f.required("nope").is_err());

        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"bundle\"; filename=\"r.zip\"\r\n\
                    Content-Type: application/zip\r\n\r\nPK\x03\x04\r\nbinary\r\n--XyZ--\r\n";
        let f = FormData::parse(
            "multipart/form-data; boundary=XyZ",
            &Bytes::from(body.as_bytes().to_vec()),
        )
        .unwrap();
        assert_eq!(f.field("csrf"), Some("abc"));
        let up = f.file("bundle").unwrap();
        assert_eq!(up.filename, "r.zip");
        assert_eq!(&up.data[..], b"PK\x03\x04\r\nbinary");

        for bad in ["--XyZ\r\nno headers", "garbage", "--XyZ\r\nX: y\r\n\r\nz"] {
            assert!(
                FormData::parse("multipart/form-data; boundary=XyZ", &Bytes::from(bad)).is_err(),
                "{bad}"
            );
        }
        assert!(FormData::parse("text/plain", &Bytes::from_static(b"x")).is_err());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
