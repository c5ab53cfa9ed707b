//! sim::answers: every answer a node gives, checked — to a request it was made, once, of the
//! request's kind, never after the client cancelled it; a PUT's OK or DATA_LOSS only when its
//! datagrams allow it; a GET's value one that a PUT of the key sent whole, never older than
//! what its node took, and exactly the settled one when the key is settled.
//!
//! It records each answer in the oracle; it never calls into a core and never sends anything.

use elayday::node::core::{Answer, FailureKind};

use super::oracle::{Op, Outcome, Settled, State};
use super::scenario::Profile;
use super::summary::Known;
use super::world::{World, SLACK};

impl World {
    /// Node `n` answered request `id`; `immediate`: within the call that made the request (or
    /// replayed it).
    pub(super) fn on_answer(&mut self, n: usize, id: usize, answer: Answer, immediate: bool) {
        let Some(r) = self.requests.get(id) else {
            self.fail(format!(
                "node {n} answered request #{id}, which nobody made"
            ));
        };
        if r.node != n {
            self.fail(format!(
                "node {n} answered request #{id}, made to node {}",
                r.node
            ));
        }
        if r.state == State::Answered {
            self.fail(format!("request #{id} answered twice"));
        }
        if r.state == State::Withdrawn || (r.cancelled && r.op == Op::Get) {
            self.fail(format!(
                "request #{id} ({:?}) answered after its client cancelled it",
                r.op
            ));
        }
        self.trace(|| match &answer {
            Answer::Value(v) => format!("node {n} answers #{id}: {} bytes", v.len()),
            Answer::Stats(_) => format!("node {n} answers #{id}: stats"),
            other => format!("node {n} answers #{id}: {other:?}"),
        });
        let outcome = match &answer {
            Answer::Done => Outcome::Done,
            Answer::Value(_) => Outcome::Value,
            Answer::Stats(_) => Outcome::Stats,
            Answer::Failed(f) => Outcome::Failed(f.kind),
        };
        let was_parked = r.state == State::Parked;
        if was_parked {
            self.nodes[n].parked.retain(|&p| p != id);
        }
        let r = &mut self.requests[id];
        r.state = State::Answered;
        r.answer = Some((self.now, outcome));
        r.immediate = immediate;
        let op = r.op;
        self.open -= 1;
        let s = &mut self.summary;
        match outcome {
            Outcome::Done => s.done += 1,
            Outcome::Value => s.values += 1,
            Outcome::Stats => {}
            Outcome::Failed(FailureKind::NotFound) => s.not_found += 1,
            Outcome::Failed(FailureKind::DataLoss) => s.data_loss += 1,
            Outcome::Failed(FailureKind::Unavailable) => s.unavailable += 1,
            Outcome::Failed(FailureKind::ResourceExhausted) => s.exhausted += 1,
            Outcome::Failed(FailureKind::InvalidArgument) => {}
        }
        if outcome == Outcome::Failed(FailureKind::Unavailable)
            && self.sc.profile == Profile::FaultFree
        {
            self.fail(format!(
                "request #{id} ({op:?}) answered UNAVAILABLE on a network with no fault"
            ));
        }
        match op {
            Op::Stats => {
                if !matches!(answer, Answer::Stats(_)) || !immediate {
                    self.fail(format!("STATS #{id} answered {outcome:?}"));
                }
            }
            Op::Get => {
                self.nodes[n].gets_open -= 1;
                self.answered_get(id, &answer, immediate);
            }
            Op::Put(w) => self.answered_put(id, w, &answer, immediate),
            Op::Delete => self.answered_delete(id, &answer, immediate, was_parked),
        }
    }

    fn answered_put(&mut self, id: usize, w: usize, answer: &Answer, immediate: bool) {
        let n = self.writes[w].node;
        let key = self.writes[w].key;
        match answer {
            Answer::Done => {
                let write = &self.writes[w];
                // Confirmed: every stripe had its data count back (the rest is rebuilt as it
                // passes), possibly before the last parity went out.
                let full = write.version.is_some() && write.returned_short == 0;
                let (version, local) = (write.version, write.superseded_locally);
                let local = local || self.superseding(w);
                let short = (0..write.stripes())
                    .find(|&s| write.returned_in[s as usize] < write.geometry.data_in(s))
                    .map(|s| (s, write.returned_in[s as usize], write.geometry.data_in(s)));
                if full {
                    // Older versions must be gone a lap later (the node drops them as they
                    // pass, from the moment it took it).
                    self.writes[w].confirmed = true;
                    self.writes[w].confirmed_at = self.now;
                    self.took(n, key, version.expect("sent"));
                    let ver = version.expect("sent");
                    self.keys[key as usize].dead.add(self.now, ver);
                } else if !local {
                    // Written, then overwritten: only if the node saw a newer version.
                    let seen = self.nodes[n].seen[key as usize];
                    match version {
                        Some(ver) if seen.is_none_or(|s| s <= ver) => {
                            let (stripe, back, need) = short.expect("not full");
                            self.fail(format!(
                                "PUT #{id} answered OK with stripe {stripe} of write #{w} short \
                                 ({back} fragments back of the {need} it needs) and no newer \
                                 version of {} seen by node {n}",
                                self.key_name(key)
                            ))
                        }
                        Some(_) => {}
                        None => self.writes[w].seen_at_done = Some(seen),
                    }
                }
                if !full {
                    // Written, then replaced: the core sends nothing more of it.
                    self.clear_write(w);
                }
            }
            Answer::Failed(f) => match f.kind {
                FailureKind::DataLoss => {
                    let write = &self.writes[w];
                    if immediate || !write.fully_sent() {
                        self.fail(format!(
                            "PUT #{id} answered DATA_LOSS before all its datagrams were sent"
                        ));
                    }
                    if write.returned_short == 0 {
                        self.fail(format!(
                            "PUT #{id} answered DATA_LOSS ({}) though every stripe of write #{w} \
                             had its data count back",
                            f.message
                        ));
                    }
                    // Only a stripe that lost more than its parity in its first lap can come
                    // back short (every fragment of it sent, links that keep order).
                    let (stripe, lost) = write.most_lost();
                    let parity = write.geometry.parity;
                    if lost <= parity {
                        if self.fifo {
                            self.fail(format!(
                                "PUT #{id} answered DATA_LOSS ({}) though no stripe of write #{w} \
                                 ({} stripes of {}+{}) lost more than its parity (most: {lost}, \
                                 stripe {stripe}; {} copies destroyed, {} dropped by nodes) and \
                                 the links keep order",
                                f.message,
                                write.stripes(),
                                write.geometry.data,
                                parity,
                                write.destroyed,
                                write.node_dropped
                            ));
                        }
                        self.summary.reorder_excused += 1;
                    }
                    self.writes[w].awaiting_rollback = true;
                    self.nodes[n].rollbacks.push(w);
                }
                FailureKind::Unavailable => self.clear_write(w),
                FailureKind::ResourceExhausted if immediate => self.clear_write(w),
                kind => self.fail(format!("PUT #{id} answered {kind:?}: {}", f.message)),
            },
            other => self.fail(format!("PUT #{id} answered {other:?}")),
        }
        self.try_resolve_write(w);
    }

    fn answered_delete(&mut self, id: usize, answer: &Answer, immediate: bool, parked: bool) {
        let n = self.requests[id].node;
        let key = self.requests[id].key;
        match answer {
            Answer::Done => {
                let Some((sent, ver)) = self.nodes[n].last_tombstone.take() else {
                    self.fail(format!(
                        "DELETE #{id} answered before its tombstone was sent"
                    ));
                };
                if sent != key || self.nodes[n].deletes.pop_front() != Some(id) {
                    self.fail(format!("DELETE #{id} answered for another tombstone"));
                }
                self.took(n, key, ver);
                self.keys[key as usize].dead.add(self.now, ver);
            }
            Answer::Failed(f)
                if (immediate || parked)
                    && matches!(
                        f.kind,
                        FailureKind::Unavailable | FailureKind::ResourceExhausted
                    ) =>
            {
                self.nodes[n].deletes.retain(|&d| d != id);
            }
            other => self.fail(format!("DELETE #{id} answered {other:?}")),
        }
        self.resolve_delete(key);
    }

    fn answered_get(&mut self, id: usize, answer: &Answer, immediate: bool) {
        let r = &self.requests[id];
        let (n, key) = (r.node, r.key);
        let name = self.key_name(key);
        // Never a wrong value: whatever comes back was written, whole, by one PUT of the key.
        let mut got = None;
        match answer {
            Answer::Value(v) => {
                // Values under 8 bytes may repeat: of the writes of that value, the newest.
                let found = self.keys[key as usize]
                    .writes
                    .iter()
                    .copied()
                    .filter(|&w| {
                        let write = &self.writes[w];
                        write.value == *v && write.version.is_some() && write.sent_short == 0
                    })
                    .max_by_key(|&w| self.writes[w].version);
                match found {
                    Some(w) => got = Some(w),
                    None => self.fail(format!(
                        "GET #{id} of {name} on node {n} returned {} bytes that no PUT of the \
                         key sent whole (corrupted, mixed or invented)",
                        v.len()
                    )),
                }
            }
            Answer::Failed(f) => match f.kind {
                FailureKind::NotFound
                | FailureKind::Unavailable
                | FailureKind::ResourceExhausted => {}
                FailureKind::DataLoss if !immediate => {}
                kind => self.fail(format!("GET #{id} answered {kind:?}: {}", f.message)),
            },
            other => self.fail(format!("GET #{id} answered {other:?}")),
        }
        // Never older than what its node confirmed or deleted, while the node remembers it.
        if let (Some(g), Some((took, at))) = (got, self.nodes[n].took[key as usize]) {
            let version = self.writes[g].version.expect("sent whole");
            let issued = self.requests[id].issued;
            if version < took && issued >= at && self.now <= at + self.memory() {
                self.fail(format!(
                    "GET #{id} of {name} on node {n} returned write #{g} (version {version:?}), \
                     older than version {took:?} that this node confirmed or deleted at {}",
                    Self::ms(at)
                ));
            }
        }
        // What it must be when nothing happened to the key since before the GET.
        let r = &self.requests[id];
        let Some(expect) = r.expect else {
            return;
        };
        let ks = &self.keys[key as usize];
        if ks.epoch != r.epoch {
            return;
        }
        if ks
            .old_rebuilt_at
            .is_some_and(|at| at + self.p_max + SLACK > r.issued)
        {
            self.summary.old_rebuilt_excused += 1;
            return;
        }
        self.summary.checked_gets += 1;
        let kind = match answer {
            Answer::Failed(f) => Some((f.kind, f.message.clone())),
            _ => None,
        };
        match expect {
            Settled::Value { write, since, .. } => {
                let w = &self.writes[write];
                match (got, kind) {
                    (Some(g), _) if g == write || self.writes[g].value == w.value => {
                        self.summary.checked_values += 1;
                    }
                    (Some(g), _) => self.fail(format!(
                        "GET #{id} of {name} on node {n} returned write #{g} (version {:?}, by \
                         node {}) where write #{write} (version {:?}, by node {}, settled at {}) \
                         is the newest and nothing else happened to the key",
                        self.writes[g].version,
                        self.writes[g].node,
                        w.version,
                        w.node,
                        Self::ms(since)
                    )),
                    (None, Some((FailureKind::Unavailable, _))) => {}
                    (None, Some((FailureKind::ResourceExhausted, message))) => {
                        let node = &self.nodes[n];
                        let too_large = w.value.len() as u64 > node.spec.limits.max_value_size;
                        let (open, started) = self.requests[id].crowd;
                        let crowded = open > 0 || node.gets_started > started + 1;
                        if !immediate && !too_large && !crowded {
                            self.fail(format!(
                                "GET #{id} of {name} on node {n}, alone on its node, answered \
                                 RESOURCE_EXHAUSTED for write #{write} of {} bytes (limits \
                                 {:?}): {message}",
                                w.value.len(),
                                node.spec.limits
                            ));
                        }
                    }
                    (None, Some((kind, message))) => {
                        // Missed only if some stripe had more fragments missing than its parity
                        // while the GET waited (or within a lap before: a fragment rebuilt then
                        // may still be on its way).
                        let since = self.requests[id].issued.saturating_sub(self.p_max + SLACK);
                        if w.short_since(since).is_some() {
                            return;
                        }
                        if immediate && kind == FailureKind::NotFound {
                            let what = format!(
                                "GET #{id} of {name} on node {n} answered NOT_FOUND at once \
                                 ({message}) where write #{write} (version {:?}, by node {}) \
                                 is the newest confirmed value, settled at {}",
                                w.version,
                                w.node,
                                Self::ms(since)
                            );
                            self.known(Known::DeletedShortcut, what);
                            return;
                        }
                        if !self.fifo {
                            self.summary.reorder_excused += 1;
                            return;
                        }
                        let issued = self.requests[id].issued;
                        if w.rebuilt_by.get(n).is_some_and(|&at| at >= issued) {
                            let what = format!(
                                "GET #{id} of {name} on node {n} answered {kind:?} ({message}) \
                                 where write #{write} is the newest confirmed value, whole in \
                                 the loop: node {n} rebuilt fragments of it while the GET \
                                 waited, and dropped the ones that came as copies"
                            );
                            self.known(Known::RepairChurn, what);
                            return;
                        }
                        let (open, started) = self.requests[id].crowd;
                        let crowded = open > 0 || self.nodes[n].gets_started > started + 1;
                        let refused = self.reassembly_refused(n) > self.requests[id].refused_before;
                        if kind == FailureKind::DataLoss && (crowded || refused) {
                            let what = format!(
                                "GET #{id} of {name} on node {n}, with other GETs on its node \
                                 ({crowded}) or datagrams it had no room for ({refused}), \
                                 answered DATA_LOSS ({message}) where write #{write} ({} \
                                 datagrams, no stripe short since the GET) is the newest \
                                 confirmed value",
                                w.count
                            );
                            self.known(Known::NoRoomAsLoss, what);
                            return;
                        }
                        self.fail(format!(
                            "GET #{id} of {name} on node {n} answered {kind:?} ({message}) \
                             where write #{write} (version {:?}, by node {}, {} datagrams in \
                             stripes of {}+{}, none of them with more than its parity missing \
                             since a lap before the GET; {} copies destroyed, {} dropped by \
                             nodes, {} rebuilt) is the newest confirmed value, settled at {}",
                            w.version,
                            w.node,
                            w.count,
                            w.geometry.data,
                            w.geometry.parity,
                            w.destroyed,
                            w.node_dropped,
                            w.repaired,
                            Self::ms(since)
                        ));
                    }
                    (None, None) => unreachable!("a GET answer is a value or a failure"),
                }
            }
            Settled::Absent { since } => match (got, kind) {
                (None, Some((FailureKind::NotFound | FailureKind::Unavailable, _))) => {}
                (None, Some((FailureKind::ResourceExhausted, _))) if immediate => {}
                (got, kind) => self.fail(format!(
                    "GET #{id} of {name} on node {n} answered {:?} where the key is deleted \
                     (or never written) and nothing else happened to it since {}",
                    got.map(|g| format!("write #{g}, version {:?}", self.writes[g].version))
                        .or(kind.map(|(k, m)| format!("{k:?}: {m}"))),
                    Self::ms(since)
                )),
            },
        }
    }
}
