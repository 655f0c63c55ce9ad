//! Toxiproxy's request bodies, read the way its Go handlers decode them
//! (`api.go`, `proxy_collection.go`, `toxic_collection.go`): the first JSON
//! value of the body, unknown fields ignored, `null` meaning "not given",
//! a wrong type a 400 "bad request body: …". Shared by the HTTP API and the
//! `--config` file loader.

use serde_json::{Map, Value};

use crate::proxy::error::FaultError;
use crate::proxy::fault_proxy::ProxyUpdate;
use crate::proxy::toxics::{Direction, Toxic, ToxicKind};

/// A proxy to create (`POST /proxies`, an element of `/populate`).
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// `name` (required).
    pub name: String,
    /// `listen` (empty: 127.0.0.1 on a free port).
    pub listen: String,
    /// `upstream` (required).
    pub upstream: String,
    /// `enabled` (default true).
    pub enabled: bool,
    /// Extra `refuse_when_upstream_down` (default false).
    pub refuse_when_upstream_down: bool,
    /// Extra `toxics`: in place before the proxy accepts anyone. Absent,
    /// `null` or `[]` leave an existing proxy's toxics alone in `/populate`.
    pub toxics: Vec<Toxic>,
}

/// Parses a whole body: its first JSON value (Go's `Decoder.Decode`).
pub fn parse_body(body: &[u8]) -> Result<Value, FaultError> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    match values.next() {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) if e.is_eof() && body.iter().all(u8::is_ascii_whitespace) => {
            Err(FaultError::BadRequestBody("EOF".into()))
        }
        Some(Err(e)) => Err(FaultError::BadRequestBody(e.to_string())),
        None => Err(FaultError::BadRequestBody("EOF".into())),
    }
}

/// The body as an object; `null` reads as an empty one (Go decodes `null`
/// into a struct as "nothing given").
fn object(value: &Value) -> Result<Map<String, Value>, FaultError> {
    match value {
        Value::Object(map) => Ok(map.clone()),
        Value::Null => Ok(Map::new()),
        other => Err(wrong_type("body", "an object", other)),
    }
}

fn wrong_type(field: &str, wanted: &str, got: &Value) -> FaultError {
    FaultError::BadRequestBody(format!("{field} must be {wanted}, not {got}"))
}

fn string(map: &Map<String, Value>, field: &str) -> Result<Option<String>, FaultError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn boolean(map: &Map<String, Value>, field: &str) -> Result<Option<bool>, FaultError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(field, "a boolean", other)),
    }
}

fn number(map: &Map<String, Value>, field: &str) -> Result<Option<f32>, FaultError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(|f| f as f32)),
        Some(other) => Err(wrong_type(field, "a number", other)),
    }
}

/// `POST /proxies`: name and upstream required, enabled by default.
pub fn new_proxy(value: &Value) -> Result<ProxySpec, FaultError> {
    let map = object(value)?;
    let name = string(&map, "name")?.unwrap_or_default();
    let listen = string(&map, "listen")?.unwrap_or_default();
    let upstream = string(&map, "upstream")?.unwrap_or_default();
    let enabled = boolean(&map, "enabled")?.unwrap_or(true);
    let refuse_when_upstream_down = boolean(&map, "refuse_when_upstream_down")?.unwrap_or(false);
    let toxics = match map.get("toxics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, t)| new_toxic(t).map_err(|e| e.at(format!("toxic {}", i + 1))))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type("toxics", "an array", other)),
    };
    if name.is_empty() {
        return Err(FaultError::MissingField("name".into()));
    }
    if upstream.is_empty() {
        return Err(FaultError::MissingField("upstream".into()));
    }
    Ok(ProxySpec {
        name,
        listen,
        upstream,
        enabled,
        refuse_when_upstream_down,
        toxics,
    })
}

/// `POST /populate` and config files: a list of proxies, every one checked
/// before any is created ("missing required field: name at proxy 2").
pub fn proxy_list(value: &Value) -> Result<Vec<ProxySpec>, FaultError> {
    let list = match value {
        Value::Array(list) => list,
        Value::Null => return Ok(Vec::new()),
        other => return Err(wrong_type("body", "an array of proxies", other)),
    };
    let specs = list
        .iter()
        .enumerate()
        .map(|(i, p)| new_proxy(p).map_err(|e| e.at(format!("proxy {}", i + 1))))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, spec) in specs.iter().enumerate() {
        let mut names: Vec<String> = Vec::new();
        for toxic in &spec.toxics {
            let name = if toxic.name.is_empty() {
                toxic.default_name()
            } else {
                toxic.name.clone()
            };
            if names.contains(&name) {
                return Err(FaultError::ToxicAlreadyExists.at(format!("proxy {}", i + 1)));
            }
            names.push(name);
        }
    }
    Ok(specs)
}

/// `POST|PATCH /proxies/{proxy}`: fields not given keep their value.
pub fn proxy_update(value: &Value) -> Result<ProxyUpdate, FaultError> {
    let map = object(value)?;
    Ok(ProxyUpdate {
        listen: string(&map, "listen")?,
        upstream: string(&map, "upstream")?,
        enabled: boolean(&map, "enabled")?,
        refuse_when_upstream_down: boolean(&map, "refuse_when_upstream_down")?,
    })
}

/// The part of `POST /proxies/{proxy}/toxics` Toxiproxy checks before
/// looking for a name clash: the toxic with default attributes, and the
/// attributes still to apply.
pub struct ToxicHead {
    /// The toxic, named (default `<type>_<stream>`), attributes all 0.
    pub toxic: Toxic,
    attributes: Value,
}

impl ToxicHead {
    /// Checks in Toxiproxy's order: body, stream, type.
    pub fn parse(value: &Value) -> Result<Self, FaultError> {
        let map = object(value)?;
        let name = string(&map, "name")?.unwrap_or_default();
        let kind_name = string(&map, "type")?.unwrap_or_default();
        let stream = string(&map, "stream")?;
        let toxicity = number(&map, "toxicity")?.unwrap_or(1.0);
        let stream: Direction = stream.as_deref().unwrap_or("downstream").parse()?;
        let kind = ToxicKind::from_type_name(&kind_name).ok_or(FaultError::InvalidToxicType)?;
        let mut toxic = Toxic {
            name,
            stream,
            toxicity,
            kind,
        };
        if toxic.name.is_empty() {
            toxic.name = toxic.default_name();
        }
        Ok(Self {
            toxic,
            attributes: map.get("attributes").cloned().unwrap_or(Value::Null),
        })
    }

    /// The toxic with its attributes.
    pub fn finish(mut self) -> Result<Toxic, FaultError> {
        self.toxic.kind.merge_attributes(&self.attributes)?;
        Ok(self.toxic)
    }
}

/// A whole new toxic (no name clash check).
pub fn new_toxic(value: &Value) -> Result<Toxic, FaultError> {
    ToxicHead::parse(value)?.finish()
}

/// `POST|PATCH /proxies/{proxy}/toxics/{toxic}`: toxicity and attributes
/// given replace the toxic's; the rest of the body is ignored.
pub fn toxic_update(
    value: &Value,
) -> Result<impl FnOnce(&mut Toxic) -> Result<(), FaultError>, FaultError> {
    let map = object(value)?;
    let toxicity = number(&map, "toxicity")?;
    let attributes = map.get("attributes").cloned().unwrap_or(Value::Null);
    Ok(move |toxic: &mut Toxic| {
        toxic.kind.merge_attributes(&attributes)?;
        if let Some(toxicity) = toxicity {
            toxic.toxicity = toxicity;
        }
        Ok(())
    })
}

/// The extras' body `{"stream": "upstream"}`: one stream, or both when the
/// body is empty or names none.
pub fn streams(body: &[u8]) -> Result<Vec<Direction>, FaultError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Direction::BOTH.to_vec());
    }
    let map = object(&parse_body(body)?)?;
    match string(&map, "stream")? {
        None => Ok(Direction::BOTH.to_vec()),
        Some(stream) => Ok(vec![stream.parse()?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_and_malformed_bodies_are_bad_requests() {
        assert_eq!(
            parse_body(b"").unwrap_err().to_string(),
            "bad request body: EOF"
        );
        assert_eq!(parse_body(b"{\"name\":").unwrap_err().status(), 400);
        // Go's decoder reads the first value and stops.
        assert_eq!(parse_body(b"{} trailing").unwrap(), json!({}));
    }

    #[test]
    fn proxy_fields_are_checked_like_toxiproxy() {
        let e = new_proxy(&json!({"upstream": "x:1"})).unwrap_err();
        assert_eq!(e.to_string(), "missing required field: name");
        let e = new_proxy(&json!({"name": "a"})).unwrap_err();
        assert_eq!(e.to_string(), "missing required field: upstream");
        let e = new_proxy(&json!({"name": 5, "upstream": "x:1"})).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            new_proxy(&json!({"name": "a", "upstream": "x:1"}))
                .unwrap()
                .enabled
        );
        let e = proxy_list(&json!([{"name": "a", "upstream": "x:1"}, {"upstream": "y:1"}]))
            .unwrap_err();
        assert_eq!(e.to_string(), "missing required field: name at proxy 2");
    }

    #[test]
    fn toxic_checks_come_in_toxiproxys_order() {
        let head = ToxicHead::parse(&json!({"type": "latency"})).unwrap();
        assert_eq!(head.toxic.name, "latency_downstream");
        assert!(matches!(
            ToxicHead::parse(&json!({"type": "nope", "stream": "sideways"})),
            Err(FaultError::InvalidStream)
        ));
        assert!(matches!(
            ToxicHead::parse(&json!({"type": "nope"})),
            Err(FaultError::InvalidToxicType)
        ));
        let bad_attrs =
            ToxicHead::parse(&json!({"type": "latency", "attributes": {"latency": "x"}})).unwrap();
        assert_eq!(bad_attrs.finish().unwrap_err().status(), 400);
    }
}
