//! The lab end to end (docs/lab.md): a client host, the bastion and a database host with a
//! real MariaDB, made from network namespaces by `tests/lab/lab.sh`, and the bypass suite of
//! `tests/scripts/bypass.py`. Needs root; skips with the reason otherwise. Everything is removed
//! on drop, also when an assertion fails.
//!
//! Two phases: without Tollgate every technique must reach the database host (which proves the
//! tools and the sniffer see a reach; an IPv4-mapped destination on the wire, which the bastion
//! never forwards, must get its "no route" answer instead); with Tollgate on the bastion every
//! one must fail, and the database host must see nothing but the gateway.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::Value;
use tollgate_tests::{
    Gateway, MariaDb, Netns, cgroup2_root, command_in,
    lab::{
        BASTION_CLIENT_V6, BASTION_DB_V4, BASTION_DB_V6, Background, CLIENT_V4, CLIENT_V6,
        CgroupDir, DB_V4, DB_V6, Host, Lab, Sniffer, bypass, bypass_in_cgroup,
    },
    require_root, run_capture, store_text, tollgate_bin,
};

/// The port of the "pong" servers on the database host (TCP and UDP): not a target.
const OTHER_PORT: &str = "3307";
/// The gateway's routed port (`[interception.routed] port`).
const GATEWAY_ROUTED_PORT: &str = "15307";
/// Source addresses that belong to nobody: one on the database's network, one on the client's.
const SPOOFED: [&str; 2] = ["198.18.2.77", "198.18.1.99"];

const WHO_AM_I: &str = "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()";

/// The phase-2 configuration (the contract with the gateway's routed interception).
/// The gateway's metrics endpoint, inside the bastion.
const METRICS_PORT: u16 = 19187;

fn gateway_config(scope: &Path, gateway_cgroup: &Path, pin: &Path, store: &Path) -> String {
    format!(
        r#"
[listener]
addresses = ["127.0.0.1:15306", "[::1]:15306"]

[interception]
cgroup = "{scope}"
gateway_cgroup = "{gateway_cgroup}"
pin_path = "{pin}"

[interception.routed]
interfaces = ["tgc"]
port = {GATEWAY_ROUTED_PORT}

[interception.egress]
interfaces = ["tgd"]

[recording]
store = "{store}"

[metrics]
listen = "127.0.0.1:{METRICS_PORT}"

[[targets]]
name = "db-v4"
address = "{DB_V4}/32"
port = 3306

[[targets]]
name = "db-v6"
address = "{DB_V6}/128"
port = 3306
"#,
        scope = scope.display(),
        gateway_cgroup = gateway_cgroup.display(),
        pin = pin.display(),
        store = store.display(),
    )
}

/// The real `mariadb` client in `netns` as `app`, giving up after `timeout_s` seconds: its
/// output lines, or its error output.
fn mariadb(netns: &Netns, host: &str, sql: &str, timeout_s: u32) -> Result<Vec<String>, String> {
    let output = run_capture(
        command_in(Some(netns), "mariadb")
            .args(["--no-defaults", "-h", host, "-P", "3306", "-u", "app"])
            .arg("-papp-pw")
            .arg(format!("--connect-timeout={timeout_s}"))
            .args(["-N", "-B", "-e", sql]),
    )
    .expect("run the mariadb client");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The address part of a processlist `host` (`198.18.1.2:40000`, `fd00:198:18:1::2:40000`).
fn address_of(host: &str) -> &str {
    host.rsplit_once(':').map_or(host, |(address, _)| address)
}

/// One way around the gateway: where it runs from and `bypass.py`'s arguments.
struct Technique {
    /// What the assertion messages call it.
    name: &'static str,
    host: Host,
    /// Run from a process in this cgroup (the bastion's techniques).
    cgroup: Option<PathBuf>,
    args: Vec<String>,
    /// The spoofed source address, when the technique uses one: no answer can come back, so
    /// only the sniffer tells whether it reached the database host.
    spoofed: Option<&'static str>,
    /// The bastion has no route for the destination (an IPv4-mapped address on the wire): it
    /// reaches nothing even without Tollgate. Without Tollgate the bastion's "no route" (ICMP)
    /// shows the packet got there; with Tollgate no such answer may come (XDP drops it first).
    unroutable: bool,
}

impl Technique {
    fn new(name: &'static str, host: Host, args: &[&str]) -> Self {
        Self {
            name,
            host,
            cgroup: None,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            spoofed: args
                .windows(2)
                .find(|pair| pair[0] == "--src")
                .and_then(|pair| SPOOFED.into_iter().find(|s| *s == pair[1])),
            unroutable: false,
        }
    }

    fn unroutable(self) -> Self {
        Self {
            unroutable: true,
            ..self
        }
    }

    fn in_cgroup(self, cgroup: &Path) -> Self {
        Self {
            cgroup: Some(cgroup.to_path_buf()),
            ..self
        }
    }

    fn run(&self, lab: &Lab) -> Value {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let netns = lab.host(self.host);
        let result = match &self.cgroup {
            Some(cgroup) => bypass_in_cgroup(netns, cgroup, &args),
            None => bypass(netns, &args),
        };
        result.unwrap_or_else(|e| panic!("technique {}: {e:#}", self.name))
    }
}

/// The suite from the client host: eleven techniques and their IPv6 twins, to `port` (3306
/// without the gateway, where MariaDB answers; [`OTHER_PORT`] with it, where 3306 is the
/// gateway's to answer and any SYN-ACK would be its own).
fn client_techniques(port: &str) -> Vec<Technique> {
    use Host::Client;
    let p = port;
    let mut techniques = Vec::new();
    if p != OTHER_PORT {
        techniques.extend([
            Technique::new("direct IPv4", Client, &["tcp", DB_V4, p]),
            Technique::new("direct IPv6", Client, &["tcp", DB_V6, p]),
            Technique::new("IPv4-mapped IPv6", Client, &["tcp", "::ffff:198.18.2.2", p]),
        ]);
    }
    techniques.extend([
        Technique::new(
            "direct IPv4, other port",
            Client,
            &["tcp", DB_V4, OTHER_PORT],
        ),
        Technique::new("IPv6, other port", Client, &["tcp", DB_V6, OTHER_PORT]),
        Technique::new(
            "IPv4-mapped IPv6, other port",
            Client,
            &["tcp", "::ffff:198.18.2.2", OTHER_PORT],
        ),
        Technique::new(
            "source port 3306",
            Client,
            &["tcp", "--bind-port", "3306", DB_V4, OTHER_PORT],
        ),
        Technique::new(
            "source port = the gateway's",
            Client,
            &["tcp", "--bind-port", GATEWAY_ROUTED_PORT, DB_V4, OTHER_PORT],
        ),
        Technique::new("UDP", Client, &["udp", DB_V4, OTHER_PORT]),
        Technique::new("UDP over IPv6", Client, &["udp", DB_V6, OTHER_PORT]),
        Technique::new("ICMP echo", Client, &["icmp", DB_V4]),
        Technique::new("ICMPv6 echo", Client, &["icmp", DB_V6]),
        Technique::new("raw SYN", Client, &["raw-syn", DB_V4, p]),
        Technique::new("raw SYN over IPv6", Client, &["raw-syn", DB_V6, p]),
        Technique::new(
            "raw SYN spoofed from the db network",
            Client,
            &["raw-syn", "--src", SPOOFED[0], DB_V4, p],
        ),
        Technique::new(
            "raw SYN spoofed from the client network",
            Client,
            &["raw-syn", "--src", SPOOFED[1], DB_V4, p],
        ),
        Technique::new("IPv4 fragments", Client, &["frag", DB_V4, p]),
        Technique::new("IPv6 fragment header", Client, &["frag", DB_V6, p]),
        Technique::new(
            "IPv4-mapped destination on the wire",
            Client,
            &["mapped-syn", "::ffff:198.18.2.2", p],
        )
        .unroutable(),
    ]);
    techniques
}

/// The suite from the bastion itself: a raw socket from the scope cgroup (raw sockets never
/// pass the connect hooks), a plain connect from a cgroup Tollgate does not manage, and an
/// IPv4-mapped address to another port.
fn bastion_techniques(scope: &Path, other: &Path) -> Vec<Technique> {
    use Host::Bastion;
    vec![
        Technique::new(
            "bastion: raw SYN from the scope",
            Bastion,
            &["raw-syn", DB_V4, "3306"],
        )
        .in_cgroup(scope),
        Technique::new(
            "bastion: connect from another cgroup",
            Bastion,
            &["tcp", DB_V4, "3306"],
        )
        .in_cgroup(other),
        Technique::new(
            "bastion: IPv4-mapped, other port",
            Bastion,
            &["tcp", "::ffff:198.18.2.2", OTHER_PORT],
        ),
    ]
}

/// Incoming packets in a capture.
fn incoming(packets: &[Value]) -> impl Iterator<Item = &Value> {
    packets.iter().filter(|p| p["dir"] == "in")
}

/// A packet from `src` (and from source port `sport`, when given) reached the capture.
fn arrived_from(packets: &[Value], src: &str, sport: Option<&Value>) -> bool {
    incoming(packets).any(|p| p["src"] == src && sport.is_none_or(|port| p["sport"] == *port))
}

fn session_started_events(store: &Path) -> Vec<Value> {
    store_text(store)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["type"] == "session.started")
        .collect()
}

#[test]
fn lab_routes_and_bypass_tools_work_without_tollgate() {
    if !require_root("lab_routes_and_bypass_tools_work_without_tollgate") {
        return;
    }
    let pid = std::process::id();
    let lab = Lab::up(&format!("l{pid}")).expect("lab up");
    let _db = MariaDb::start(Some(lab.db()), "*", 3306).expect("MariaDB on the db host");
    let _pong_tcp = Background::start(lab.db(), &["listen-tcp", OTHER_PORT]).expect("pong/tcp");
    let _pong_udp = Background::start(lab.db(), &["listen-udp", OTHER_PORT]).expect("pong/udp");
    let scope = CgroupDir::create(cgroup2_root().join(format!("tollgate-lab-{pid}-p1-scope")))
        .expect("a stand-in for the scope cgroup");
    let other = CgroupDir::create(cgroup2_root().join(format!("tollgate-lab-{pid}-p1-other")))
        .expect("another cgroup");

    // The bastion routes: the client reaches MariaDB directly, as itself, over both families.
    for (address, client) in [(DB_V4, CLIENT_V4), (DB_V6, CLIENT_V6)] {
        let lines = mariadb(lab.client(), address, WHO_AM_I, 5)
            .unwrap_or_else(|e| panic!("client to {address}: {e}"));
        let host = lines.first().expect("processlist host");
        assert_eq!(address_of(host), client, "MariaDB saw {host}");
    }

    // Every technique reaches the database host while nothing guards it.
    let sniffer = Sniffer::start(lab.db(), "eth0").expect("sniffer on the db host");
    let techniques: Vec<Technique> = client_techniques("3306")
        .into_iter()
        .chain(bastion_techniques(&scope.path, &other.path))
        .collect();
    let results: Vec<(&Technique, Value)> = techniques.iter().map(|t| (t, t.run(&lab))).collect();
    let packets = sniffer.finish().expect("the capture");
    for (technique, result) in &results {
        if technique.unroutable {
            assert_eq!(
                result["detail"]["icmp_error"]["from"], BASTION_CLIENT_V6,
                "{}: the bastion did not answer \"no route\": {result}",
                technique.name
            );
            continue;
        }
        match technique.spoofed {
            // No answer can come back to a spoofed source: the capture shows it arrived.
            Some(src) => assert!(
                arrived_from(&packets, src, Some(&result["detail"]["sport"])),
                "{}: the sniffer saw no packet from {src}: {result}",
                technique.name
            ),
            None => assert_eq!(
                result["reached"], true,
                "{} did not reach the db host: {result}",
                technique.name
            ),
        }
    }
    // The capture sees the client itself, over both families, and both kinds of fragments.
    for src in [CLIENT_V4, CLIENT_V6] {
        assert!(arrived_from(&packets, src, None), "nothing from {src}");
    }
    for family in [4, 6] {
        assert!(
            incoming(&packets).any(|p| p["fragment"] == true && p["family"] == family),
            "no IPv{family} fragment captured"
        );
    }
}

/// Runs `tollgate down` in the bastion on drop, then removes the lab's cgroups (the gateway's
/// pins go with `tollgate down`).
struct Interception<'a> {
    bastion: &'a Netns,
    config: PathBuf,
    _cgroups: Vec<CgroupDir>,
}

impl Interception<'_> {
    fn tollgate(&self, command: &str) -> std::process::Output {
        self.tollgate_args(&[command])
    }

    /// `tollgate ARGS... --config CONFIG` in the bastion.
    fn tollgate_args(&self, args: &[&str]) -> std::process::Output {
        run_capture(
            command_in(Some(self.bastion), tollgate_bin())
                .args(args)
                .arg("--config")
                .arg(&self.config),
        )
        .unwrap_or_else(|e| panic!("tollgate {args:?}: {e:#}"))
    }
}

impl Drop for Interception<'_> {
    fn drop(&mut self) {
        let _ = self.tollgate("down");
    }
}

fn assert_success(what: &str, output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Only the gateway's addresses (and the bastion's neighbour discovery) reach the db host.
fn assert_only_the_gateway_arrived(packets: &[Value], when: &str) {
    let strays: Vec<&Value> = incoming(packets)
        .filter(|p| {
            let src = p["src"].as_str().unwrap_or_default();
            let ndp = p["proto"] == 58 && (src == "::" || src.starts_with("fe80:"));
            !(src == BASTION_DB_V4 || src == BASTION_DB_V6 || ndp)
        })
        .collect();
    assert!(
        strays.is_empty(),
        "{when}: packets from other than the gateway reached the db host: {strays:#?}"
    );
}

/// Runs the whole suite (client and bastion) with the gateway up: no technique reaches the db
/// host, and the db host sees nothing but the gateway.
fn assert_no_bypass(lab: &Lab, scope: &Path, other: &Path) {
    let sniffer = Sniffer::start(lab.db(), "eth0").expect("sniffer on the db host");
    let techniques: Vec<Technique> = client_techniques(OTHER_PORT)
        .into_iter()
        .chain(bastion_techniques(scope, other))
        .collect();
    assert!(techniques.len() >= 10);
    let results: Vec<(&Technique, Value)> = techniques.iter().map(|t| (t, t.run(lab))).collect();
    let packets = sniffer.finish().expect("the capture");
    for (technique, result) in &results {
        assert_eq!(
            result["reached"], false,
            "{} reached the db host: {result}",
            technique.name
        );
        if technique.unroutable {
            assert_eq!(
                result["detail"]["sent"], true,
                "{} was not sent: {result}",
                technique.name
            );
            assert!(
                result["detail"]["icmp_error"].is_null(),
                "{}: the bastion's stack saw it (XDP did not drop it): {result}",
                technique.name
            );
        }
        // A hand-made packet from the bastion carries the gateway's own address: its source
        // port tells it apart.
        if technique.host == Host::Bastion
            && let Some(sport) = result["detail"].get("sport")
        {
            assert!(
                !arrived_from(&packets, BASTION_DB_V4, Some(sport)),
                "{} reached the db host: {result}",
                technique.name
            );
        }
    }
    assert_only_the_gateway_arrived(&packets, "the bypass suite");
}

/// Every session the database saw (`host` of its processlist) has a recorded start whose
/// upstream local address is that host.
fn assert_recorded(store: &Path, seen_by_db: &[String]) {
    let recorded: Vec<String> = session_started_events(store)
        .iter()
        .filter_map(|e| e["upstream_local_addr"].as_str().map(str::to_owned))
        .collect();
    for host in seen_by_db {
        let (address, port) = host.rsplit_once(':').expect("host:port");
        let as_socket_addr = if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            host.clone()
        };
        assert!(
            recorded.contains(&as_socket_addr),
            "the db saw {host}, never recorded (recorded: {recorded:?})"
        );
    }
}

/// `tollgate status` names the programs, `--json` counted every kind of drop the bypass suite caused, and the
/// gateway is running.
fn assert_counted(interception: &Interception<'_>) {
    let status = interception.tollgate("status");
    assert_success("tollgate status", &status);
    let status_text = String::from_utf8_lossy(&status.stdout);
    for program in [
        "tollgate_connect4",
        "tollgate_connect6",
        "tollgate_sockops",
        "tollgate_tc_steer",
        "tollgate_sk_lookup",
        "tollgate_xdp_guard",
        "tollgate_cgroup_egress",
        "tollgate_tc_egress",
    ] {
        assert!(
            status_text.contains(program),
            "status does not name {program}:\n{status_text}"
        );
    }

    // Every drop was counted by the program that made it.
    let json = interception.tollgate_args(&["status", "--json"]);
    assert_success("tollgate status --json", &json);
    let status: Value = serde_json::from_slice(&json.stdout).expect("status JSON");
    let counter = |name: &str| {
        status["counters"]
            .as_array()
            .and_then(|c| c.iter().find(|pair| pair[0] == name))
            .and_then(|pair| pair[1].as_u64())
            .unwrap_or_else(|| panic!("no counter {name}: {status:#}"))
    };
    for name in [
        "routed_syn_steered",
        "routed_dropped_no_gateway",
        "xdp_dropped_not_tcp",
        "xdp_dropped_other_port",
        "xdp_dropped_fragment",
        "xdp_dropped_ipv4_mapped",
        "egress_dropped_not_gateway",
        "cgroup_egress_dropped_not_gateway",
        "egress_passed_gateway",
    ] {
        assert!(counter(name) > 0, "{name} is 0: {status:#}");
    }
    assert_eq!(status["gateway"]["running"], true, "{status:#}");

    // The same counters on the gateway's metrics endpoint.
    let metrics = run_capture(command_in(Some(interception.bastion), "python3").args([
        "-c",
        &format!(
            "import urllib.request; print(urllib.request.urlopen(\
             'http://127.0.0.1:{METRICS_PORT}/metrics', timeout=5).read().decode())"
        ),
    ]))
    .expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("tollgate_datapath_packets_total{counter=\"xdp_dropped_fragment\"}")
        })
        .unwrap_or_else(|| panic!("no data-path counter on /metrics:\n{metrics}"));
    assert_ne!(line.rsplit(' ').next(), Some("0"), "{line}");
}

/// A client that keeps its socket open after `COM_QUIT` makes the gateway close first: the
/// flow's 4-tuple is then in TIME-WAIT on the bastion. A new connect from the same client port
/// must still reach the gateway (the kernel's TIME-WAIT handling, then `sk_lookup`).
fn assert_a_port_in_time_wait_connects_again(lab: &Lab) {
    let port = "40111";
    let login = ["mysql", "--bind-port", port];
    let target = [DB_V4, "3306", "app", "app-pw"];
    let hold = ["--quit-hold", "2"];
    let first =
        bypass(lab.client(), &[&login[..], &hold, &target].concat()).expect("first connection");
    assert_eq!(first["reached"], true, "first connection: {first}");
    let ss = command_in(Some(lab.bastion()), "ss")
        .args(["-Htan", "state", "time-wait"])
        .output()
        .expect("ss");
    let time_wait = String::from_utf8_lossy(&ss.stdout);
    assert!(
        time_wait.contains(&format!("{CLIENT_V4}:{port}")),
        "the flow is not in TIME-WAIT on the bastion:\n{time_wait}"
    );
    let again = bypass(lab.client(), &[&login[..], &target].concat()).expect("second connection");
    assert_eq!(again["reached"], true, "same source port again: {again}");
}

#[test]
fn routed_clients_reach_mariadb_only_through_the_gateway() {
    if !require_root("routed_clients_reach_mariadb_only_through_the_gateway") {
        return;
    }
    let pid = std::process::id();
    let root = cgroup2_root();
    let scope = root.join(format!("tollgate-lab-{pid}"));
    let gateway_cgroup = root.join(format!("tollgate-lab-{pid}-gw"));
    let pin = PathBuf::from(format!("/sys/fs/bpf/tollgate-lab-{pid}"));

    let lab = Lab::up(&format!("g{pid}")).expect("lab up");
    let _db = MariaDb::start(Some(lab.db()), "*", 3306).expect("MariaDB on the db host");
    let _pong_tcp = Background::start(lab.db(), &["listen-tcp", OTHER_PORT]).expect("pong/tcp");
    let _pong_udp = Background::start(lab.db(), &["listen-udp", OTHER_PORT]).expect("pong/udp");

    // One store for the gateway's whole life, across the restart below.
    let dir = tempfile::Builder::new()
        .prefix("tollgate-lab-")
        .tempdir()
        .expect("tempdir");
    let store = dir.path().join("recordings");
    let config = gateway_config(&scope, &gateway_cgroup, &pin, &store);
    let config_path = dir.path().join("tollgate.toml");
    fs::write(&config_path, &config).expect("write the configuration");

    let interception = Interception {
        bastion: lab.bastion(),
        config: config_path.clone(),
        _cgroups: vec![
            CgroupDir::create(root.join(format!("tollgate-lab-{pid}-other")))
                .expect("another cgroup"),
            CgroupDir::adopt(scope.clone()),
            CgroupDir::adopt(gateway_cgroup.clone()),
        ],
    };
    let other = root.join(format!("tollgate-lab-{pid}-other"));
    assert_success("tollgate up", &interception.tollgate("up"));
    let mut gateway = Gateway::start(Some(lab.bastion()), &config).expect("gateway");

    // Routed clients get through, and MariaDB sees the gateway, not them.
    let mut seen_by_db = Vec::new();
    for (address, gateway_address) in [(DB_V4, BASTION_DB_V4), (DB_V6, BASTION_DB_V6)] {
        let lines = mariadb(lab.client(), address, WHO_AM_I, 5)
            .unwrap_or_else(|e| panic!("client to {address}: {e}\n{}", gateway.log_text()));
        let host = lines.first().expect("processlist host").clone();
        assert_eq!(address_of(&host), gateway_address, "MariaDB saw {host}");
        seen_by_db.push(host);
    }
    let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
    while session_started_events(&store).len() < 2 && std::time::SystemTime::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = session_started_events(&store);
    let v4 = started
        .iter()
        .find(|e| e["original_destination"] == "198.18.2.2:3306")
        .unwrap_or_else(|| panic!("no IPv4 session recorded: {started:#?}"));
    let client_v4 = v4["client_addr"].as_str().unwrap_or_default();
    assert!(client_v4.starts_with("198.18.1.2:"), "{v4}");
    assert_eq!(v4["steering"], "routed", "{v4}");
    let v6 = started
        .iter()
        .find(|e| e["original_destination"] == "[fd00:198:18:2::2]:3306")
        .unwrap_or_else(|| panic!("no IPv6 session recorded: {started:#?}"));
    let client_v6 = v6["client_addr"].as_str().unwrap_or_default();
    assert!(client_v6.starts_with("[fd00:198:18:1::2]:"), "{v6}");

    assert_a_port_in_time_wait_connects_again(&lab);

    // The bypass suite: nothing reaches the database host but the gateway.
    assert_no_bypass(&lab, &scope, &other);

    // Fail closed: with the gateway gone, routed clients get nowhere.
    gateway.kill();
    let sniffer = Sniffer::start(lab.db(), "eth0").expect("sniffer on the db host");
    let refused = mariadb(lab.client(), DB_V4, "SELECT 1", 3);
    let packets = sniffer.finish().expect("the capture");
    assert!(refused.is_err(), "a client got through a dead gateway");
    assert_only_the_gateway_arrived(&packets, "with the gateway killed");
    assert!(
        !incoming(&packets).any(|p| p["proto"] == 6 && p["dport"] == 3306),
        "TCP to 3306 reached the db host with the gateway killed: {packets:#?}"
    );

    // Restarted (in the bastion, on the same store), it serves again.
    gateway.restart(&[]).expect("gateway restarted");
    let lines = mariadb(lab.client(), DB_V4, WHO_AM_I, 5)
        .unwrap_or_else(|e| panic!("client after the restart: {e}\n{}", gateway.log_text()));
    let host = lines.first().expect("processlist host").clone();
    assert_eq!(address_of(&host), BASTION_DB_V4, "MariaDB saw {host}");
    seen_by_db.push(host);
    let deadline = std::time::SystemTime::now() + Duration::from_secs(10);
    while session_started_events(&store).len() < 3 && std::time::SystemTime::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_recorded(&store, &seen_by_db);

    assert_counted(&interception);

    drop(gateway);
    assert_success("tollgate down", &interception.tollgate("down"));
    assert!(!pin.exists(), "{} left behind", pin.display());
    drop(interception);
}
