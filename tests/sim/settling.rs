//! sim::settling: the world's account of each key's versions — which version a node took
//! (confirmed or deleted), when a write is resolved and a key settles, what a GET made now must
//! answer, which writes a later request on their node replaces, and which datagrams are
//! obsolete (an older version sent after a newer one, or one still in the network a lap after
//! it was made obsolete).
//!
//! It keeps the oracle's records ([`super::oracle`]) up to date for the parts that drive the
//! world; it never calls into a core, never puts anything on the network and sets no deadline.
//! The only invariant it checks is the obsolete datagram (`check_stale`).

use super::net::{Datagram, Ver};
use super::oracle::{Op, Owner, Settled, State};
use super::summary::Known;
use super::world::{World, SLACK};

impl World {
    /// What a GET of `key` on node `n` made now must answer, if the key is settled.
    pub(super) fn expectation(&self, n: usize, key: u16) -> Option<Settled> {
        let ks = &self.keys[key as usize];
        match ks.settled? {
            s @ Settled::Value { origin, since, .. } => {
                let since = since.max(ks.muddled_until);
                // On FIFO links every older datagram is gone once the newest value has been
                // round (they were ahead of it); on other links they may lag by up to a lap.
                let ready = self.now >= since
                    && (self.fifo || origin == n || self.now >= since + self.p_max + SLACK);
                ready.then_some(s)
            }
            s @ Settled::Absent { since } => {
                let ready = ks.newest.is_none()
                    || (self.now >= since + self.p_max + SLACK && self.now >= ks.muddled_until);
                ready.then_some(s)
            }
        }
    }

    /// A later PUT or DELETE of `key` was taken by node `n`: it replaces the writes of the key
    /// the node still confirms (they are answered OK, as written then overwritten).
    pub(super) fn superseded_locally(&mut self, n: usize, key: u16, except: usize) {
        for &w in &self.keys[key as usize].writes {
            let write = &self.writes[w];
            if w != except
                && write.node == n
                && write.accepted_at.is_some()
                && self.requests[write.req].answer.is_none()
            {
                self.writes[w].superseded_locally = true;
            }
        }
    }

    /// Whether a later PUT or DELETE of write `w`'s key on its node is being taken right now
    /// (by the call being made, or by the replay of parked requests).
    pub(super) fn superseding(&self, w: usize) -> bool {
        let write = &self.writes[w];
        self.in_command
            .iter()
            .chain(self.replaying.iter())
            .any(|&id| {
                let r = &self.requests[id];
                id > write.req
                    && r.node == write.node
                    && r.key == write.key
                    && matches!(r.op, Op::Put(_) | Op::Delete)
            })
    }

    /// Node `n` confirmed or deleted version `ver` of `key` now.
    pub(super) fn took(&mut self, n: usize, key: u16, ver: Ver) {
        let took = &mut self.nodes[n].took[key as usize];
        if took.is_none_or(|(v, _)| ver > v) {
            *took = Some((ver, self.now));
        }
    }

    /// Write `w` will send nothing more.
    pub(super) fn clear_write(&mut self, w: usize) {
        let n = self.writes[w].node;
        self.nodes[n].queue.retain(|&q| q != w);
        self.writes[w].cleared = true;
    }

    pub(super) fn try_resolve_write(&mut self, w: usize) {
        let write = &self.writes[w];
        let answered = matches!(
            self.requests[write.req].state,
            State::Answered | State::Withdrawn
        );
        let done_sending = write.accepted_at.is_none() || write.fully_sent() || write.cleared;
        if write.resolved || !answered || !done_sending || write.awaiting_rollback {
            return;
        }
        self.writes[w].resolved = true;
        let key = self.writes[w].key;
        self.keys[key as usize].unresolved -= 1;
        self.maybe_settle(key);
    }

    pub(super) fn resolve_delete(&mut self, key: u16) {
        self.keys[key as usize].unresolved -= 1;
        self.maybe_settle(key);
    }

    /// When nothing is happening to a key any more, what a GET must answer.
    fn maybe_settle(&mut self, key: u16) {
        let ks = &mut self.keys[key as usize];
        if ks.unresolved > 0 || ks.settled.is_some() || ks.muddled {
            return;
        }
        ks.settled = match ks.newest {
            None | Some((_, Owner::Tombstone)) => Some(Settled::Absent { since: self.now }),
            Some((_, Owner::Write(w))) if self.writes[w].confirmed => Some(Settled::Value {
                write: w,
                origin: self.writes[w].node,
                since: self.now,
            }),
            Some(_) => None,
        };
    }

    /// A node that had not heard of the newest version of `key` sent an older one. The node
    /// that made the newest drops it within a lap if it still remembers the newest then.
    pub(super) fn born_obsolete(&mut self, key: u16) {
        let ks = &self.keys[key as usize];
        let gone_by = self.now + self.p_max + SLACK;
        let remembered = match ks.newest {
            Some((_, Owner::Write(w))) => {
                let write = &self.writes[w];
                if write.confirmed {
                    gone_by <= write.confirmed_at + 2 * self.memory()
                } else {
                    // Still waiting to be confirmed: its record is kept.
                    self.requests[write.req].answer.is_none()
                }
            }
            Some((_, Owner::Tombstone)) => gone_by <= ks.newest_at + self.memory(),
            None => unreachable!("older than the newest"),
        };
        let ks = &mut self.keys[key as usize];
        ks.settled = None;
        if remembered {
            ks.muddled_until = ks.muddled_until.max(gone_by);
        } else {
            ks.muddled = true;
        }
        self.trace(|| {
            format!(
                "{}: an older version went out (remembered: {remembered})",
                self.key_name(key)
            )
        });
    }

    /// No datagram of a deleted or overwritten version after one lap.
    pub(super) fn check_stale(&mut self, key: u16, write: usize, d: &Datagram) {
        let (born, knowing) = (d.born, d.knowing);
        let ver = self.writes[write].version.expect("sent data has a version");
        let memory = self.memory();
        let Some((due, floor, cause)) = self.keys[key as usize]
            .dead
            .deadline(ver, born, knowing, self.p_max, memory)
        else {
            return;
        };
        if self.now > due + SLACK {
            if knowing && self.now > born + self.p_max + SLACK {
                // Past its own lap too: nobody drops it any more, it circulates for ever.
                self.summary.immortal += 1;
                self.trace(|| format!("immortal: write #{write} sent at {}", Self::ms(born)));
            }
            if self.writes[write].lingering {
                return;
            }
            let w = &self.writes[write];
            let answer = self.requests[w.req].answer;
            let what = format!(
                "a {}DATA datagram of {} version {ver:?} (write #{write} by node {}, answered \
                 {answer:?}, sent at {}{}) is in the network {} after version {floor:?} made it \
                 obsolete (one lap is at most {})",
                if d.rebuilt { "rebuilt " } else { "" },
                self.key_name(key),
                w.node,
                Self::ms(born),
                if knowing {
                    " by a node that had seen a newer version"
                } else {
                    ""
                },
                Self::ms(self.now - cause),
                Self::ms(self.p_max)
            );
            if knowing {
                // Let pass, once per write; what it may revive is no longer checked.
                let bug = if d.rebuilt {
                    Known::RebuiltObsolete
                } else {
                    Known::LingeringWrite
                };
                self.known(bug, what);
                self.writes[write].lingering = true;
                let ks = &mut self.keys[key as usize];
                ks.muddled = true;
                ks.settled = None;
            } else {
                self.fail(what);
            }
        }
    }
}
