//! `lattice-xds proxy-status`: a table of connected proxies, like `istioctl proxy-status`.

use crate::admin_api::proxy_status_service_client::ProxyStatusServiceClient;
use crate::admin_api::{ListProxiesRequest, ListProxiesResponse, ProxyStatus, TypeStatus};
use crate::xds::type_url;

/// Asks the controller at `admin` and prints the table to stdout.
pub async fn run(admin: &str) -> anyhow::Result<()> {
    let mut client = ProxyStatusServiceClient::connect(admin.to_string())
        .await
        .map_err(|error| anyhow::anyhow!("cannot reach the controller at {admin}: {error}"))?;
    let response = client
        .list_proxies(ListProxiesRequest {})
        .await?
        .into_inner();
    print!("{}", table(&response));
    Ok(())
}

/// The table: one row per proxy, one column per type: SYNCED, STALE (sent, not yet acked),
/// NACKED, or NOT SENT; and the pod each stream authenticated as, when streams authenticate.
pub fn table(response: &ListProxiesResponse) -> String {
    // Streams carry an identity when the controller authenticates them (--xds-auth).
    let authenticated = response.proxies.iter().any(|p| !p.identity.is_empty());
    // VHDS only when a proxy fetches virtual hosts on demand.
    let on_demand = (response.proxies.iter()).any(|proxy| {
        proxy
            .types
            .iter()
            .any(|t| t.type_url == type_url::VIRTUAL_HOST)
    });
    let types: Vec<&str> = (type_url::ORDER.into_iter())
        .filter(|t| on_demand || *t != type_url::VIRTUAL_HOST)
        .collect();
    let mut header = ["NODE", "CLUSTER", "PROTOCOL"].map(str::to_string).to_vec();
    header.extend(types.iter().map(|t| type_url::short(t).to_string()));
    if authenticated {
        header.push("IDENTITY".to_string());
    }
    let mut rows = vec![header];
    for proxy in &response.proxies {
        let mut row = vec![
            proxy.node_id.clone(),
            proxy.cluster.clone(),
            proxy.protocol.clone(),
        ];
        row.extend(types.iter().map(|t| cell(proxy, t)));
        if authenticated {
            row.push(proxy.identity.clone());
        }
        rows.push(row);
    }
    let mut out = format!("snapshot version: {}\n", response.snapshot_version);
    out.push_str(&aligned(&rows));
    if !response.destinations.is_empty() {
        out.push('\n');
        out.push_str(&destinations(response));
    }
    out
}

/// The destinations served, with the route each came from, the VPC Lattice service the API
/// lists under the name, and the IAM auth policies VPC Lattice evaluates for it.
fn destinations(response: &ListProxiesResponse) -> String {
    let mut rows = vec![
        ["DESTINATION", "ROUTE", "SERVICE", "AUTH POLICIES"]
            .map(str::to_string)
            .to_vec(),
    ];
    let or_dash = |text: &str| match text {
        "" => "-".to_string(),
        text => text.to_string(),
    };
    for destination in &response.destinations {
        let policies = if destination.auth_policies.is_empty() {
            "none".to_string()
        } else {
            destination.auth_policies.join(", ")
        };
        // The service's name and ARN; the rest of its provenance is in the config dump.
        let service = destination.service.split("; ").next().unwrap_or_default();
        rows.push(vec![
            destination.destination.clone(),
            or_dash(&destination.route),
            or_dash(service),
            policies,
        ]);
    }
    aligned(&rows)
}

/// Rows as left-aligned columns two spaces apart.
fn aligned(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn cell(proxy: &ProxyStatus, type_url: &str) -> String {
    let Some(status) = proxy.types.iter().find(|t| t.type_url == type_url) else {
        return "NOT SENT".to_string();
    };
    describe(status)
}

fn describe(status: &TypeStatus) -> String {
    if !status.nacked_version.is_empty() {
        return format!("NACKED ({}): {}", status.nacked_version, status.nack_error);
    }
    if status.sent_version == status.acked_version {
        return format!("SYNCED ({})", status.sent_version);
    }
    format!(
        "STALE (sent {}, acked {})",
        status.sent_version, status.acked_version
    )
}
