//! The protocol thread's side of group messaging and nodelist changes:
//! client inputs into the group state machine, its outputs onto the ring,
//! into client queues and into corosync.conf.

use std::time::{Duration, Instant};

use vireo_membership::config::{self, edit, NodeConfig};
use vireo_membership::groups::{Answer, Event, Frame, GroupError, Output, Request};
use vireo_membership::node::GROUP_CPG;

use crate::clients::Input;
use crate::Daemon;

/// How long a removed node waits before leaving, so its answer goes out.
const EXIT_GRACE: Duration = Duration::from_millis(300);

impl Daemon {
    /// Everything the client threads and the join service sent.
    pub(crate) fn take_inputs(&mut self) -> Result<(), String> {
        while let Ok(input) = self.inputs.try_recv() {
            match input {
                Input::Connected { conn, out } => {
                    self.clients.insert(conn, out);
                }
                Input::Closed { conn } => {
                    self.clients.remove(&conn);
                    self.groups.gone(conn);
                }
                Input::Frame { conn, frame } => self.request(conn, frame),
            }
            self.group_outputs()?;
            // What the next ring's JoinList announces.
            if let Ok(mut l) = self.local_groups.lock() {
                *l = self.groups.local_list();
            }
        }
        let actions = self.node.take_pending();
        self.apply(actions)
    }

    fn request(&mut self, conn: u32, frame: Frame) {
        let req = match frame.parse::<Request>() {
            Ok(r) => r,
            Err(e) => return self.reply(conn, 0, Err(GroupError::BadRequest(e))),
        };
        match req {
            Request::Join { req, group } => self.groups.join(conn, req, &group),
            Request::Leave { req, group } => self.groups.leave(conn, req, &group),
            Request::Nodelist { req, change } => self.groups.nodelist(conn, req, change),
            Request::Send {
                req,
                group,
                require_quorum,
            } => {
                let result = self
                    .groups
                    .send(conn, &group, frame.data, require_quorum)
                    .and_then(|bytes| match self.casts.is_empty() {
                        true if self.node.broadcast_to(GROUP_CPG, bytes) => Ok(Answer::Done),
                        _ => Err(GroupError::TryAgain),
                    });
                self.reply(conn, req, result);
            }
        }
    }

    fn reply(&mut self, conn: u32, req: u64, result: Result<Answer, GroupError>) {
        self.queue_for(conn, Frame::new(&Event::Reply { req, result }, Vec::new()));
    }

    /// Queues a frame for a client; one that does not keep up is dropped.
    fn queue_for(&mut self, conn: u32, frame: Frame) {
        let Some(out) = self.clients.get(&conn) else {
            return;
        };
        if out.try_send(frame.encode()).is_err() {
            eprintln!(
                "vireo-membershipd: group client {conn} does not read its events: disconnected"
            );
            self.clients.remove(&conn);
            self.groups.gone(conn);
        }
    }

    /// Carries out what the group state machine asked for.
    pub(crate) fn group_outputs(&mut self) -> Result<(), String> {
        loop {
            let outputs = self.groups.take();
            if outputs.is_empty() {
                return Ok(());
            }
            for o in outputs {
                match o {
                    Output::Broadcast(b) => self.casts.push_back(b),
                    Output::Client(conn, frame) => self.queue_for(conn, frame),
                    Output::Nodelist {
                        nodes,
                        answer,
                        nodeid,
                    } => self.nodelist_changed(nodes, answer, nodeid)?,
                    Output::NodelistRefused { answer, why } => {
                        if let Some((conn, req)) = answer {
                            self.reply(conn, req, Err(GroupError::Nodelist(why)));
                        }
                    }
                }
            }
            self.flush_casts()?;
        }
    }

    /// Hands queued group broadcasts to the node, oldest first, while it takes them.
    pub(crate) fn flush_casts(&mut self) -> Result<(), String> {
        let mut sent = false;
        while let Some(b) = self.casts.front() {
            if !self.node.broadcast_to(GROUP_CPG, b.clone()) {
                break;
            }
            self.casts.pop_front();
            sent = true;
        }
        if sent {
            let actions = self.node.take_pending();
            self.apply(actions)?;
        }
        Ok(())
    }

    /// An ordered nodelist change: corosync.conf rewritten, then applied as
    /// a reload would be.
    fn nodelist_changed(
        &mut self,
        nodes: Vec<NodeConfig>,
        answer: Option<(u32, u64)>,
        nodeid: u32,
    ) -> Result<(), String> {
        let text =
            edit::replace_section(&self.conf_text, "nodelist", &edit::render_nodelist(&nodes));
        let cfg = match config::parse(&text) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("vireo-membershipd: nodelist change gives a bad config: {e}");
                if let Some((conn, req)) = answer {
                    self.reply(conn, req, Err(GroupError::Nodelist(e.to_string())));
                }
                return Ok(());
            }
        };
        let me = self.node.node_id();
        if !cfg.nodes.iter().any(|n| n.nodeid == me) {
            // We were removed: the file goes aside so nothing restarts us into
            // a cluster that no longer lists us, and we leave the ring.
            let aside = self.conf_path.with_extension("conf.removed");
            if let Err(e) = std::fs::rename(&self.conf_path, &aside) {
                eprintln!("vireo-membershipd: {}: {e}", self.conf_path.display());
            }
            let _ = std::fs::remove_file(self.conf_path.with_file_name("join.key"));
            eprintln!("vireo-membershipd: this node left the nodelist; leaving the ring");
            self.exit_at = Some(Instant::now() + EXIT_GRACE);
        } else if let Err(e) = edit::write_atomic(&self.conf_path, &text) {
            eprintln!(
                "vireo-membershipd: writing {}: {e}",
                self.conf_path.display()
            );
        }
        self.conf_text = text.clone();
        self.use_config(&cfg)?;
        eprintln!(
            "vireo-membershipd: nodelist changed (node {nodeid}): {} nodes",
            cfg.nodes.len()
        );
        if let Some((conn, req)) = answer {
            self.reply(conn, req, Ok(Answer::Nodelist { nodeid, conf: text }));
        }
        Ok(())
    }

    /// Re-reads corosync.conf (SIGHUP, `corosync-cfgtool -R`). A file that
    /// does not parse is logged and the running config kept, as corosync does.
    pub(crate) fn reload(&mut self, why: &str) -> Result<(), String> {
        let text = match std::fs::read_to_string(&self.conf_path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!(
                    "vireo-membershipd: reload ({why}): {}: {e}",
                    self.conf_path.display()
                );
                return Ok(());
            }
        };
        match config::parse(&text) {
            Ok(cfg) => {
                eprintln!(
                    "vireo-membershipd: reloaded {} ({why}): {} nodes",
                    self.conf_path.display(),
                    cfg.nodes.len()
                );
                self.conf_text = text;
                self.groups.set_config(&cfg);
                self.use_config(&cfg)
            }
            Err(e) => {
                eprintln!(
                    "vireo-membershipd: reload ({why}) refused, keeping the running config: {e}"
                );
                Ok(())
            }
        }
    }

    fn use_config(&mut self, cfg: &config::CorosyncConfig) -> Result<(), String> {
        self.transport.reconfigure(cfg);
        if self.firewall {
            crate::guard_totem_port(cfg);
        }
        if let Ok(mut name) = self.cluster_name.lock() {
            *name = cfg.totem.cluster_name.clone().unwrap_or_default();
        }
        let actions = self.node.reconfigure(cfg);
        self.apply(actions)
    }
}
