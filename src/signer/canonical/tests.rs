use super::*;

fn canonical(request: &Request<'_>) -> String {
    let mut out = String::new();
    write(
        request,
        &[("x-amz-date", "20260101T000000Z")],
        "UNSIGNED-PAYLOAD",
        PathRules::default(),
        false,
        &mut Scratch::default(),
        &mut out,
    );
    out
}

#[test]
fn an_applications_own_signature_and_amz_headers_are_not_signed() {
    let headers = [
        ("authorization", "AWS4-HMAC-SHA256 Credential=stolen"),
        ("X-Amz-Date", "19990101T000000Z"),
        ("x-amz-security-token", "someone-elses"),
        ("accept", "*/*"),
    ];
    let text = canonical(&Request {
        method: "GET",
        path: "/",
        authority: "svc.example.com",
        headers: &headers,
    });
    assert!(
        !text.contains("stolen") && !text.contains("1999") && !text.contains("someone"),
        "{text}"
    );
    assert!(
        text.ends_with("accept;host;x-amz-date\nUNSIGNED-PAYLOAD"),
        "{text}"
    );
}

#[test]
fn proxy_headers_are_left_out_and_host_loses_its_default_port() {
    let headers = [
        ("x-forwarded-proto", "http"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("x-amzn-trace-id", "Root=1-abc"),
        ("te", "trailers"),
        ("x-request-id", "42"),
    ];
    for (authority, host) in [
        ("svc.example.com:443", "svc.example.com"),
        ("svc.example.com:80", "svc.example.com"),
        ("svc.example.com:8443", "svc.example.com:8443"),
    ] {
        let text = canonical(&Request {
            method: "POST",
            path: "/",
            authority,
            headers: &headers,
        });
        assert!(text.contains(&format!("\nhost:{host}\n")), "{text}");
        assert!(text.contains("\nhost;x-amz-date;x-request-id\n"), "{text}");
    }
}

#[test]
fn query_parameters_are_decoded_reencoded_and_sorted() {
    let text = canonical(&Request {
        method: "GET",
        path: "/a%20b/../c?b=2&a=2&a=1&q=x+y&e=%7e%41&flag&&s=%2f",
        authority: "h",
        headers: &[],
    });
    let mut lines = text.lines();
    assert_eq!(lines.nth(1), Some("/c"));
    assert_eq!(lines.next(), Some("a=1&a=2&b=2&e=~A&flag=&q=x%20y&s=%2F"));
}

#[test]
fn paths_are_encoded_twice_and_dot_segments_removed() {
    let text = canonical(&Request {
        method: "GET",
        path: "//a/./b%2Fc/d e/ü/..//",
        authority: "h",
        headers: &[],
    });
    assert_eq!(text.lines().nth(1), Some("/a/b%252Fc/d%20e/"));
}

#[test]
fn repeated_headers_join_in_order_with_whitespace_collapsed() {
    let headers = [
        ("X-Tag", " one  two "),
        ("x-tag", "three\tfour"),
        ("Accept", "a"),
    ];
    let text = canonical(&Request {
        method: "GET",
        path: "/",
        authority: "h",
        headers: &headers,
    });
    assert!(
        text.contains(
            "\naccept:a\nhost:h\nx-amz-date:20260101T000000Z\nx-tag:one two,three four\n"
        ),
        "{text}"
    );
}
