//! The README's first command, `make demo NETNS=1`, as a new user runs it: every call answers
//! as the README shows, and how the sidecar knew each host is printed. Needs root, as the demo
//! does (port 443, a network namespace, iptables).

mod support;

use std::process::Command;

#[test]
fn the_demo_makes_every_call_of_the_walkthrough() {
    let output = Command::new("bash")
        .arg("scripts/demo.sh")
        .env("DEMO_NETNS", "1")
        .env("LATTICE_XDS_BIN", support::lattice_xds())
        .output()
        .expect("bash runs the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Each call: its command line, then the answer and how the sidecar knew the host.
    let answer = |command: &str| -> String {
        let start = stdout
            .find(command)
            .unwrap_or_else(|| panic!("no call {command:?}:\n{stdout}"));
        let rest = &stdout[start..];
        rest.split("\n\n").next().unwrap_or_default().to_string()
    };
    let cluster2 = answer("-- curl demo-cluster2.example.com");
    assert!(
        cluster2.contains("HTTP 200\nRequesting to Pod(demo-cluster2-v1)"),
        "{cluster2}"
    );
    assert!(
        cluster2
            .contains("discovered service demo-cluster2-apps of service network lattice-gateway"),
        "{cluster2}"
    );
    let cluster1 = answer("-- curl demo-cluster1.example.com");
    assert!(
        cluster1.contains("HTTP 403\nAccessDeniedException: User: arn:aws:sts::890742582773:"),
        "{cluster1}"
    );
    assert!(
        cluster1.contains("local route apps/demo-cluster1, discovered service demo-cluster1-apps"),
        "{cluster1}"
    );
    let inventory = answer(".vpclattice.amazonaws.com\n");
    assert!(
        inventory.contains("HTTP 200\nRequesting to Pod(inventory-partner)"),
        "{inventory}"
    );
    assert!(
        inventory.contains("service network partner-network"),
        "{inventory}"
    );
    let greeter = answer("-service greeter");
    assert!(greeter.contains("\nSERVING\n"), "{greeter}");
    let ledger = answer("-- curl https://ledger.example.com");
    assert!(
        ledger.contains("HTTP 200\nHello from ledger (TLS terminated by the service itself)"),
        "{ledger}"
    );
    assert!(ledger.contains("passed it through"), "{ledger}");
}
