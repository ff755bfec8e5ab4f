//! Signatures per second: the signer's SigV4 (cached signing key, reused buffers) against the
//! `aws-sigv4` crate's own `sign`, on the same typical egress request, in the same run.
//!
//! `scripts/bench-signing.sh` runs this and prints the ratio for `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lattice_xds::signer::canonical::Request;
use lattice_xds::signer::sigv4::{Options, Scope, SigV4};

const AUTHORITY: &str = "demo-cluster2.example.com";
const PATH: &str = "/orders/7?include=items&page=2";
const HEADERS: [(&str, &str); 5] = [
    ("accept", "*/*"),
    ("user-agent", "curl/8.5.0"),
    ("x-request-id", "c928f191-7c3c-4862-b07b-fa9a3c4eb5e2"),
    ("x-tenant", "apps"),
    ("content-type", "application/json"),
];

fn credentials() -> Credentials {
    Credentials::new(
        "ASIAPODCREDENTIALS",
        "pod/secret+KEY/of-demo-cluster1",
        Some("IQoJb3JpZ2luX2VjEPodIdentity//token==".to_string()),
        None,
        "bench",
    )
}

fn signatures(c: &mut Criterion) {
    let credentials = credentials();
    let time = SystemTime::now();
    let scope = Scope {
        region: "eu-west-1",
        service: "vpc-lattice-svcs",
    };
    let mut group = c.benchmark_group("sigv4");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));

    let ours = SigV4::default();
    let options = Options::default();
    group.bench_function("lattice-xds", |b| {
        b.iter(|| {
            let request = Request {
                method: "GET",
                path: PATH,
                authority: AUTHORITY,
                headers: &HEADERS,
            };
            black_box(ours.sign(black_box(&request), &credentials, scope, time, &options))
        })
    });

    let identity = credentials.clone().into();
    let url = format!("https://{AUTHORITY}{PATH}");
    group.bench_function("aws-sigv4", |b| {
        b.iter(|| {
            let mut settings = SigningSettings::default();
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(scope.region)
                .name(scope.service)
                .time(time)
                .settings(settings)
                .build()
                .expect("signing parameters")
                .into();
            let mut headers = vec![("host", AUTHORITY)];
            headers.extend(HEADERS);
            let request = SignableRequest::new(
                "GET",
                black_box(url.as_str()),
                headers.into_iter(),
                SignableBody::UnsignedPayload,
            )
            .expect("signable request");
            black_box(sign(request, &params).expect("signature").into_parts())
        })
    });
    group.finish();
}

criterion_group!(benches, signatures);
criterion_main!(benches);
