//! Cross-check against botocore, an independent SigV4 implementation: randomized requests
//! (methods; paths with reserved, control and UTF-8 characters, literal percent sequences and
//! dot segments; repeated, empty and oddly encoded query keys and values; repeated header names
//! with several values, header case and runs of whitespace; very long paths, values and headers;
//! with and without a session token) signed by both must carry identical `Authorization`
//! headers.

mod support;

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use lattice_xds::signer::canonical::Request;
use lattice_xds::signer::sigv4::{Options, Scope, SigV4};
use lattice_xds::signer::time::AmzDate;
use serde_json::json;

/// Requests compared in `make test`; `LATTICE_XDS_CROSSCHECK_REQUESTS` sets another number for
/// the longer run (`docs/properties.md`).
const REQUESTS: usize = 2000;
/// Requests per botocore process.
const BATCH: usize = 10_000;
const REGION: &str = "eu-west-1";
const SERVICE: &str = "vpc-lattice-svcs";

/// xorshift64*: a seeded generator, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Characters of paths and query parameters: unreserved, reserved, space, percent and literal
/// percent sequences (valid, invalid UTF-8, an encoded slash), control characters, UTF-8.
const TEXT: &[&str] = &[
    "a", "Z", "9", "-", "_", ".", "~", "!", "$", "&", "'", "(", ")", "*", "+", ",", ";", "=", ":",
    "@", " ", "%", "é", "ü", "日本", "Ω", "🚀", "\"", "<", "|", "^", "`", "{", "}", "%00", "%FF",
    "%2F", "%2e", "%%", "\u{1}", "\u{7f}", "\t", "/", "?", "#", "[", "]", "\\",
];

fn text(random: &mut Random, max: usize, avoid: &[&str]) -> String {
    let mut out = String::new();
    if random.chance(2) {
        // Very long: a few kilobytes.
        out.push_str(&"long".repeat(256 + random.below(768)));
    }
    for _ in 0..1 + random.below(max) {
        let piece = random.pick(TEXT);
        if !avoid.contains(piece) {
            out.push_str(piece);
        }
    }
    out
}

/// How an application might put a decoded query component on the wire.
fn encode_component(random: &mut Random, decoded: &str) -> String {
    let lowercase_hex = random.chance(30);
    let encode_unreserved = random.chance(20);
    let plus_for_space = random.chance(50);
    let mut out = String::new();
    for byte in decoded.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte);
        if unreserved && !encode_unreserved {
            out.push(byte as char);
        } else if byte == b' ' && plus_for_space {
            out.push('+');
        } else if lowercase_hex {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

struct Generated {
    method: String,
    authority: String,
    /// The path as the application sends it (query included).
    wire_path: String,
    /// The path alone, for botocore's URL.
    path: String,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

fn generate(random: &mut Random) -> Generated {
    let method = random
        .pick(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
        .to_string();
    let host = random.pick(&[
        "svc.example.com",
        "demo-cluster2.example.com",
        "a-1.lattice.example",
    ]);
    let port = random.pick(&["", ":443", ":8443"]);
    let mut path = String::new();
    for _ in 0..random.below(8) {
        path.push('/');
        match random.below(10) {
            0 => path.push('.'),
            1 => path.push_str(".."),
            2 => {}
            // Raw control characters never reach the signer in a path: Envoy refuses them (and
            // Python's URL parser, under botocore, drops tabs). Encoded, they do: `%00`, `%FF`.
            _ => path.push_str(&text(random, 6, &["?", "#", "\u{1}", "\u{7f}", "\t"])),
        }
    }
    if path.is_empty() || random.chance(20) {
        path.push('/');
    }
    let mut params = Vec::new();
    let mut query = Vec::new();
    for _ in 0..random.below(6) {
        let name = if !params.is_empty() && random.chance(30) {
            // A repeated key, with its own value.
            let (name, _): &(String, String) = random.pick(&params);
            name.clone()
        } else if random.chance(8) {
            // An empty key (`=value`).
            String::new()
        } else {
            text(random, 4, &[])
        };
        let value = if random.chance(15) {
            String::new()
        } else {
            text(random, 6, &[])
        };
        let mut wire = encode_component(random, &name);
        if !value.is_empty() || name.is_empty() || random.chance(50) {
            wire.push('=');
            wire.push_str(&encode_component(random, &value));
        }
        query.push(wire);
        params.push((name, value));
    }
    let mut headers = Vec::new();
    for index in 0..random.below(7) {
        let name = random.pick(&[
            "X-Custom",
            "x-custom",
            "Accept",
            "CONTENT-TYPE",
            "x-Tenant",
            "If-None-Match",
        ]);
        let name = if !headers.is_empty() && random.chance(30) {
            // The same name again: one header of several values.
            let (name, _): &(String, String) = random.pick(&headers);
            name.clone()
        } else if random.chance(50) {
            format!("{name}-{index}")
        } else {
            name.to_string()
        };
        let mut value = String::new();
        if random.chance(3) {
            // Very long: several kilobytes.
            value.push_str(&"v".repeat(4096 + random.below(4096)));
        }
        for _ in 0..1 + random.below(4) {
            value.push_str(random.pick::<&str>(&["  ", " ", "\t", "", "\t \t", "     "]));
            value.push_str(random.pick::<&str>(&[
                "text/plain",
                "v1",
                "a,b",
                "q=0.9",
                "\"etag\"",
                "x",
            ]));
        }
        value.push_str(random.pick::<&str>(&["", " ", "\t "]));
        headers.push((name, value));
    }
    let wire_path = if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{}", query.join("&"))
    };
    Generated {
        method,
        authority: format!("{host}{port}"),
        wire_path,
        path,
        params,
        headers,
    }
}

fn requests() -> usize {
    std::env::var("LATTICE_XDS_CROSSCHECK_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(REQUESTS)
}

#[test]
fn signatures_match_botocore_for_randomized_requests() {
    let mut random = Random(0x1a77_1ce5_1995_0001);
    let time = UNIX_EPOCH + Duration::from_secs(1_764_331_200 + random.below(86_400 * 365) as u64);
    let with_token = Credentials::new(
        "ASIAEXAMPLEKEYID0001",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEXAMPLE//token+with/slashes==".to_string()),
        None,
        "crosscheck",
    );
    let without_token = Credentials::new(
        "AKIAEXAMPLEKEYID0002",
        "another/secret+KEY",
        None,
        None,
        "crosscheck",
    );
    let signer = SigV4::default();
    let scope = Scope {
        region: REGION,
        service: SERVICE,
    };

    // Half the requests with a session token, half without, in batches of at most BATCH.
    let total = requests();
    let batch = BATCH.min(total.div_ceil(2)).max(1);
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for round in 0.. {
        if compared >= total {
            break;
        }
        let credentials = if round % 2 == 0 {
            &with_token
        } else {
            &without_token
        };
        let generated: Vec<Generated> = (0..batch.min(total - compared))
            .map(|_| generate(&mut random))
            .collect();
        let ours: Vec<String> = generated
            .iter()
            .map(|request| {
                let headers: Vec<(&str, &str)> = request
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let signed = signer.sign(
                    &Request {
                        method: &request.method,
                        path: &request.wire_path,
                        authority: &request.authority,
                        headers: &headers,
                    },
                    credentials,
                    scope,
                    time,
                    &Options::default(),
                );
                signed
                    .headers
                    .iter()
                    .find(|(name, _)| *name == "authorization")
                    .unwrap()
                    .1
                    .clone()
            })
            .collect();
        let job = json!({
            "access_key": credentials.access_key_id(),
            "secret_key": credentials.secret_access_key(),
            "token": credentials.session_token(),
            "region": REGION,
            "service": SERVICE,
            "timestamp": AmzDate::new(time).as_str(),
            "requests": generated.iter().map(|request| json!({
                "method": request.method,
                "authority": request.authority,
                "path": request.path,
                "params": request.params,
                "headers": request.headers,
            })).collect::<Vec<_>>(),
        });
        let output = support::python::run("botocore_sign.py", job.to_string().as_bytes());
        let theirs: Vec<String> = serde_json::from_slice(&output).unwrap();
        assert_eq!(theirs.len(), ours.len());
        for ((request, ours), theirs) in generated.iter().zip(&ours).zip(&theirs) {
            compared += 1;
            if ours != theirs {
                mismatches.push(format!(
                    "{} {} (host {}, headers {:?})\n  ours:     {ours}\n  botocore: {theirs}",
                    request.method, request.wire_path, request.authority, request.headers
                ));
            }
        }
    }
    eprintln!("{compared} requests compared with botocore");
    assert!(
        compared >= total.min(1000),
        "only {compared} requests compared"
    );
    assert!(
        mismatches.is_empty(),
        "{} of {compared} signatures differ from botocore's; first ones:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
