use super::*;

/// The test-peer recipe of shared/specs/corosync-wire.md: three udpu nodes, no
/// crypto, token 1000, votequorum, logging to a file, per-node state dir.
const RECIPE: &str = "\
totem {
	version: 2
	cluster_name: vireo-lab
	transport: udpu
	crypto_cipher: none
	crypto_hash: none
	token: 1000
}

nodelist {
	node {
		ring0_addr: 10.99.0.1
		nodeid: 1
		name: cs1
	}
	node {
		ring0_addr: 10.99.0.2
		nodeid: 2
		name: cs2
	}
	node {
		ring0_addr: 10.99.0.3
		nodeid: 3
		name: cs3
	}
}

quorum {
	provider: corosync_votequorum
}

logging {
	to_logfile: yes
	logfile: /tmp/cs1/corosync.log
	to_syslog: no
	timestamp: on
}

system {
	state_dir: /tmp/cs1/state
	sched_rr: no
	move_to_root_cgroup: no
}
";

fn err(text: &str) -> ConfigError {
    parse(text).expect_err("config should be refused")
}

fn with_totem(extra: &str) -> String {
    RECIPE.replace("\ttoken: 1000\n", &format!("\ttoken: 1000\n{extra}\n"))
}

#[test]
fn recipe_config_parses_with_corosync_defaults() {
    let c = parse(RECIPE).unwrap();
    assert_eq!(c.totem.cluster_name.as_deref(), Some("vireo-lab"));
    assert_eq!(c.totem.transport, Transport::Udpu);
    assert_eq!(c.totem.crypto_cipher, CryptoCipher::None);
    assert_eq!(c.totem.crypto_hash, CryptoHash::None);
    assert_eq!(c.totem.port, 5405);
    assert_eq!((c.totem.token, c.totem.token_coefficient), (1000, 650));
    let t = c.totem.timers;
    // 3 nodes: token + (3 - 2) * 650; consensus 1.2 * that; retransmit token / 4.2.
    assert_eq!(t.token, 1650);
    assert_eq!(t.consensus, 1980);
    assert_eq!(t.token_retransmit, 392);
    assert_eq!(t.hold, 303);
    assert_eq!((t.join, t.merge, t.downcheck), (50, 200, 1000));
    assert_eq!(
        (t.window_size, t.max_messages, t.miss_count_const),
        (50, 17, 5)
    );
    assert_eq!((t.fail_recv_const, t.seqno_unchanged_const), (2500, 30));
    let ids: Vec<_> = c
        .nodes
        .iter()
        .map(|n| (n.nodeid, n.ring0_addr.to_string(), n.name.clone()))
        .collect();
    assert_eq!(
        ids,
        [
            (1, "10.99.0.1".to_string(), Some("cs1".to_string())),
            (2, "10.99.0.2".to_string(), Some("cs2".to_string())),
            (3, "10.99.0.3".to_string(), Some("cs3".to_string())),
        ]
    );
    assert_eq!(c.nodes[0].votes, 1);
    assert_eq!(
        c.quorum,
        QuorumConfig {
            expected_votes: None,
            two_node: false,
            wait_for_all: false,
            last_man_standing: false,
            last_man_standing_window: 10_000,
            auto_tie_breaker: None,
        }
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn defaults_without_token_and_explicit_overrides() {
    let two = RECIPE.replace("\ttoken: 1000\n", "");
    let two = two.replace(
        "\tnode {\n\t\tring0_addr: 10.99.0.3\n\t\tnodeid: 3\n\t\tname: cs3\n\t}\n",
        "",
    );
    let c = parse(&two).unwrap();
    assert_eq!(c.nodes.len(), 2);
    // Two nodes: no coefficient.
    assert_eq!(
        (c.totem.timers.token, c.totem.timers.consensus),
        (3000, 3600)
    );

    let c = parse(&with_totem("\ttoken_coefficient: 0\n\tconsensus: 5000\n\tjoin: 60\n\tinterface {\n\t\tlinknumber: 0\n\t\tmcastport: 5500\n\t}")).unwrap();
    assert_eq!(c.totem.timers.token, 1000);
    assert_eq!((c.totem.timers.consensus, c.totem.timers.join), (5000, 60));
    assert_eq!(c.totem.port, 5500);
}

#[test]
fn quorum_options() {
    let q = |opts: &str| {
        parse(&RECIPE.replace(
            "provider: corosync_votequorum",
            &format!("provider: corosync_votequorum\n{opts}"),
        ))
        .map(|c| c.quorum)
    };
    let c = q("expected_votes: 5\nwait_for_all: 1\nlast_man_standing: 1\nlast_man_standing_window: 20000\nauto_tie_breaker: 1\nauto_tie_breaker_node: 3 1").unwrap();
    assert_eq!(c.expected_votes, Some(5));
    assert!(c.wait_for_all && c.last_man_standing);
    assert_eq!(c.last_man_standing_window, 20_000);
    assert_eq!(c.auto_tie_breaker, Some(AutoTieBreaker::Nodes(vec![3, 1])));
    // two_node implies wait_for_all unless it is set.
    let c = q("two_node: 1").unwrap();
    assert!(c.two_node && c.wait_for_all);
    let c = q("two_node: 1\nwait_for_all: 0").unwrap();
    assert!(c.two_node && !c.wait_for_all);
    // Three nodes, ATB without wait_for_all: corosync disables ATB ...
    assert_eq!(q("auto_tie_breaker: 1").unwrap().auto_tie_breaker, None);
    // ... and refuses to start when last_man_standing is also set.
    assert!(matches!(
        q("auto_tie_breaker: 1\nlast_man_standing: 1")
            .unwrap_err()
            .kind,
        ConfigErrorKind::Invalid(_)
    ));
    assert_eq!(
        q("wait_for_all: 1\nauto_tie_breaker: 1\nauto_tie_breaker_node: highest")
            .unwrap()
            .auto_tie_breaker,
        Some(AutoTieBreaker::Highest)
    );
    let e = q("two_node: yes").unwrap_err();
    assert!(matches!(e.kind, ConfigErrorKind::NotInteger { .. }), "{e}");
    let e = q("wait_for_all: 1\nauto_tie_breaker: 1\nauto_tie_breaker_node: first").unwrap_err();
    assert!(e.to_string().contains("lowest, highest"), "{e}");
}

#[test]
fn unsupported_options_name_line_and_alternatives() {
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    let knet = RECIPE.replace("transport: udpu", "transport: knet");
    let e = err(&knet);
    assert_eq!(e.line, line_of(&knet, "transport: knet"));
    assert!(e.to_string().contains("supported: udpu"), "{e}");

    let no_transport = RECIPE.replace("\ttransport: udpu\n", "");
    let e = err(&no_transport);
    assert_eq!(e.line, 1);
    assert!(e.to_string().contains("knet"), "{e}");

    let aes = RECIPE.replace("crypto_cipher: none", "crypto_cipher: aes256");
    let e = err(&aes);
    assert_eq!(e.line, line_of(&aes, "aes256"));
    assert!(e.to_string().contains("supported: none"), "{e}");

    let sha = RECIPE.replace("crypto_hash: none", "crypto_hash: sha256");
    assert_eq!(err(&sha).line, line_of(&sha, "sha256"));

    let no_id = RECIPE.replace("\t\tnodeid: 2\n", "");
    let e = err(&no_id);
    assert_eq!(e.line, line_of(&no_id, "ring0_addr: 10.99.0.2") - 1);
    assert!(e.to_string().contains("nodeid is missing"), "{e}");

    let host = RECIPE.replace("ring0_addr: 10.99.0.3", "ring0_addr: cs3.example");
    let e = err(&host);
    assert_eq!(e.line, line_of(&host, "cs3.example"));
    assert!(e.to_string().contains("IPv4 address"), "{e}");

    let ring1 = RECIPE.replace(
        "\t\tname: cs1\n",
        "\t\tname: cs1\n\t\tring1_addr: 10.98.0.1\n",
    );
    assert!(matches!(
        err(&ring1).kind,
        ConfigErrorKind::UnsupportedKey { .. }
    ));

    let link1 = with_totem("\tinterface {\n\t\tlinknumber: 1\n\t}");
    assert_eq!(err(&link1).line, line_of(&link1, "linknumber: 1"));

    let qdevice = RECIPE.replace(
        "provider: corosync_votequorum",
        "provider: corosync_votequorum\ndevice {\nmodel: net\n}",
    );
    assert!(err(&qdevice).to_string().contains("qdevice"));

    let provider = RECIPE.replace("corosync_votequorum", "corosync_other");
    assert!(err(&provider)
        .to_string()
        .contains("supported: corosync_votequorum"));

    let secauth = with_totem("\tsecauth: on");
    assert_eq!(err(&secauth).line, line_of(&secauth, "secauth"));
}

#[test]
fn values_are_typed_like_corosync() {
    let t = with_totem("\tjoin: 50 # ms");
    let e = err(&t);
    assert_eq!(e.line, line_of_str(&t, "# ms"));
    assert_eq!(
        e.kind,
        ConfigErrorKind::NotInteger {
            key: "totem.join".into(),
            value: "50 # ms".into(),
            min: 0,
            max: u32::MAX as u64
        }
    );
    assert!(matches!(
        err(&with_totem("\twindow_size: -1")).kind,
        ConfigErrorKind::NotInteger { .. }
    ));
    // Quotes are not special to corosync's parser: they are part of the value.
    let quoted = RECIPE.replace("cluster_name: vireo-lab", "cluster_name: \"vireo lab\"");
    assert_eq!(
        parse(&quoted).unwrap().totem.cluster_name.as_deref(),
        Some("\"vireo lab\"")
    );
    // A repeated key overrides the earlier one, as in corosync's key map.
    let c = parse(&with_totem("\ttoken: 2000")).unwrap();
    assert_eq!(c.totem.token, 2000);
    // A timer below corosync's minimum is refused where it was set.
    let t = with_totem("\tconsensus: 40");
    let e = err(&t);
    assert_eq!(e.line, line_of_str(&t, "consensus: 40"));
}

fn line_of_str(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn harmless_unknowns_become_warnings() {
    let c = parse(&with_totem("\tknet_pmtud_interval: 30\n\tfuture_option: 1")).unwrap();
    let msgs: Vec<_> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].contains("knet_pmtud_interval") && msgs[1].contains("future_option"));
    assert!(c.warnings.iter().all(|w| w.line > 0));
}

#[test]
fn structural_errors() {
    assert_eq!(
        err("quorum {\nprovider: corosync_votequorum\n}\n").kind,
        ConfigErrorKind::Missing {
            key: "nodelist".into(),
            why: "udpu needs every member listed"
        }
    );
    let dup = RECIPE.replace("nodeid: 3", "nodeid: 2");
    assert!(err(&dup).to_string().contains("listed twice"));
    let zero = RECIPE.replace("nodeid: 3", "nodeid: 0");
    assert!(err(&zero).to_string().contains("reserved"));
    let e = err(&RECIPE.replace("system {", "system"));
    assert!(matches!(e.kind, ConfigErrorKind::Syntax(_)));
    assert!(e.to_string().starts_with("corosync.conf line "), "{e}");
}
