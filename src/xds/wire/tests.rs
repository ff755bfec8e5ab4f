use super::*;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::service::discovery::v3 as generated;
use envoy_types::util::pack_any;

fn cluster(name: &str, padding: usize) -> Cluster {
    Cluster {
        name: name.to_string(),
        alt_stat_name: "x".repeat(padding),
        ..Default::default()
    }
}

/// Every buffer of the encoder, and the message they make once the prefix is checked.
fn encode(response: impl Response) -> (Vec<Bytes>, Vec<u8>) {
    let mut encoder = Encoder::new(response);
    let buffers: Vec<Bytes> = std::iter::from_fn(|| encoder.next_buffer()).collect();
    let whole: Vec<u8> = buffers.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(whole[0], 0, "uncompressed");
    let length = u32::from_be_bytes(whole[1..5].try_into().unwrap()) as usize;
    assert_eq!(
        length,
        whole.len() - 5,
        "the prefix gives the message's length"
    );
    (buffers, whole[5..].to_vec())
}

#[test]
fn a_packed_resource_is_the_any_that_prost_encodes() {
    let cluster = cluster("billing", 10);
    let packed = Packed::new(&cluster);
    assert_eq!(
        packed.bytes().as_ref(),
        pack_any(cluster.clone()).encode_to_vec()
    );
    assert_eq!(packed.value(), cluster.encode_to_vec());
    assert_eq!(packed.to_any(), pack_any(cluster));
    let empty = Packed::new(&Cluster::default());
    assert_eq!(empty.to_any(), pack_any(Cluster::default()));
}

#[test]
fn a_state_of_the_world_response_decodes_as_the_generated_message() {
    let small = Packed::new(&cluster("a", 0));
    let large = Packed::new(&cluster("b", 5000));
    let response = DiscoveryResponse {
        version_info: "7".to_string(),
        resources: vec![small.clone(), large.clone(), small.clone()],
        type_url: "t".to_string(),
        nonce: "3".to_string(),
    };
    let (_, bytes) = encode(response);
    let decoded = generated::DiscoveryResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(
        (decoded.version_info.as_str(), decoded.type_url.as_str()),
        ("7", "t")
    );
    assert_eq!(decoded.nonce, "3");
    let names: Vec<String> = (decoded.resources.iter())
        .map(|any| Cluster::decode(any.value.as_slice()).unwrap().name)
        .collect();
    assert_eq!(names, ["a", "b", "a"]);
}

#[test]
fn a_delta_response_decodes_as_the_generated_message() {
    let response = DeltaDiscoveryResponse {
        system_version_info: "9".to_string(),
        resources: vec![DeltaResource {
            name: "egress".to_string(),
            version: "abc".to_string(),
            resource: Packed::new(&cluster("egress", 2000)),
        }],
        type_url: "t".to_string(),
        nonce: "1".to_string(),
        removed_resources: vec!["gone".to_string(), String::new()],
    };
    let (_, bytes) = encode(response);
    let decoded = generated::DeltaDiscoveryResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.system_version_info, "9");
    assert_eq!(decoded.removed_resources, ["gone", ""]);
    let resource = &decoded.resources[0];
    assert_eq!(
        (resource.name.as_str(), resource.version.as_str()),
        ("egress", "abc")
    );
    let any = resource.resource.as_ref().unwrap();
    assert_eq!(
        Cluster::decode(any.value.as_slice()).unwrap().name,
        "egress"
    );
}

#[test]
fn every_stream_sends_a_large_resource_from_the_snapshot_bytes() {
    let large = Packed::new(&cluster("route-table", 2 << 20));
    let response = || DiscoveryResponse {
        version_info: "1".to_string(),
        resources: vec![large.clone()],
        type_url: "t".to_string(),
        nonce: "1".to_string(),
    };
    for _stream in 0..2 {
        let (buffers, _) = encode(response());
        let shared = buffers.iter().find(|b| b.len() == large.len()).unwrap();
        assert_eq!(shared.as_ptr(), large.bytes().as_ptr(), "not a copy");
        let own: usize = (buffers.iter())
            .filter(|b| b.as_ptr() != large.bytes().as_ptr())
            .map(Bytes::len)
            .sum();
        assert!(own < 64, "the stream's own bytes: {own}");
    }
}

#[test]
fn small_resources_are_written_a_chunk_at_a_time() {
    let resources: Vec<DeltaResource> = (0..2000)
        .map(|i| DeltaResource {
            name: format!("host-{i}"),
            version: "v".to_string(),
            resource: Packed::new(&cluster(&format!("host-{i}"), 400)),
        })
        .collect();
    let response = DeltaDiscoveryResponse {
        resources,
        nonce: "1".to_string(),
        ..Default::default()
    };
    let (buffers, bytes) = encode(response);
    assert!(bytes.len() > 800_000, "{} bytes", bytes.len());
    let largest = buffers.iter().map(Bytes::len).max().unwrap();
    assert!(
        largest <= CHUNK + SHARED_MIN + 128,
        "a buffer of {largest} bytes"
    );
    let decoded = generated::DeltaDiscoveryResponse::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.resources.len(), 2000);
    assert_eq!(decoded.resources[1999].name, "host-1999");
}

#[test]
fn a_spliced_message_decodes_as_the_whole_one() {
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
    let hosts: Vec<VirtualHost> = (0..3)
        .map(|n| VirtualHost {
            name: format!("h{n}"),
            domains: vec![format!("h{n}.example.com")],
            ..Default::default()
        })
        .collect();
    let head = RouteConfiguration {
        name: "egress".into(),
        ..Default::default()
    };
    let items: Vec<Bytes> = (hosts.iter())
        .map(|host| Bytes::from(host.encode_to_vec()))
        .collect();
    let mut slices = items.clone();
    let packed =
        Packed::spliced::<RouteConfiguration, _>(&head.encode_to_vec(), 2, &mut slices, |item| {
            item
        });

    let whole = RouteConfiguration {
        virtual_hosts: hosts,
        ..head
    };
    assert_eq!(packed.to_any(), pack_any(whole.clone()));
    assert_eq!(RouteConfiguration::decode(packed.value()).unwrap(), whole);
    assert_eq!(slices, items, "each item's bytes, within the packed ones");
    assert!(
        (slices.iter()).all(|slice| packed.bytes().as_ptr_range().contains(&slice.as_ptr())),
        "the items' bytes are the packed bytes, not copies"
    );
}
