//! How rules run (reference §4.1): rules are chosen up front by the intended transition,
//! run in priority order, and stop once one changes the proposed type. Rules entered
//! before such a change "fizzle": what they did is undone. The rule that made the change
//! keeps its own effects. Global bookkeeping then runs on the final proposal, and the
//! after-hooks of rules that did not fizzle run last, in reverse order.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

use super::{Decision, Details, RunBook, Status, TagLimit, TransitionContext};
use crate::states::{State, StateType};

/// A transition's FROM or TO set. `Any` includes "no state".
#[derive(Debug, Clone, Copy)]
pub enum States {
    Any,
    Only(&'static [StateType]),
    AllBut(&'static [StateType]),
    Terminal,
}

impl States {
    pub fn contains(self, kind: Option<StateType>) -> bool {
        match (self, kind) {
            (States::Any, _) => true,
            (_, None) => false,
            (States::Only(set), Some(k)) => set.contains(&k),
            (States::AllBut(set), Some(k)) => !set.contains(&k),
            (States::Terminal, Some(k)) => k.is_terminal(),
        }
    }
}

/// Effects that take place after the transition is written, unless the rule fizzled.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    AddPauseKey(String),
    SetResuming,
    TrackFlowRunCount(i32),
    InsertCache,
}

/// The working state of one transition while its rules run.
pub struct Transition<'a> {
    pub ctx: &'a TransitionContext,
    /// The proposal as rules see it; None once a rule rejected to "keep current", delayed
    /// or aborted.
    pub proposed: Option<State>,
    pub status: Status,
    pub details: Details,
    pub book: RunBook,
    pub slots: Vec<TagLimit>,
    /// Limits whose slots changed.
    pub touched: BTreeSet<String>,
    original_book: RunBook,
    original_slots: Vec<TagLimit>,
    intended: StateType,
    changed: bool,
    afters: Vec<After>,
    pending_cache: Option<(String, Option<DateTime<Utc>>)>,
}

pub type Rule = fn(&mut Transition<'_>);

/// A rule with the transitions it is chosen for.
pub struct RuleSpec {
    pub from: States,
    pub to: States,
    pub run: Rule,
    /// Universal rules run after the bookkeeping on any non-null final state instead.
    pub universal: bool,
}

impl<'a> Transition<'a> {
    pub fn new(ctx: &'a TransitionContext) -> Self {
        Transition {
            ctx,
            proposed: Some(ctx.proposed.clone()),
            status: Status::Accept,
            details: Details::AcceptDetails,
            book: ctx.book.clone(),
            slots: ctx.tag_limits.clone(),
            touched: BTreeSet::new(),
            original_book: ctx.book.clone(),
            original_slots: ctx.tag_limits.clone(),
            intended: ctx.proposed.kind,
            changed: false,
            afters: Vec::new(),
            pending_cache: None,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    pub fn initial(&self) -> Option<&State> {
        self.ctx.initial.as_ref()
    }

    pub fn initial_type(&self) -> Option<StateType> {
        self.ctx.initial.as_ref().map(|s| s.kind)
    }

    /// The proposal; rules only run while it exists.
    pub fn proposal(&self) -> &State {
        self.proposed.as_ref().unwrap_or(&self.ctx.proposed)
    }

    pub fn proposal_mut(&mut self) -> Option<&mut State> {
        self.proposed.as_mut()
    }

    /// Undoes what earlier rules did: they fizzle because this rule changes the type.
    fn fizzle_earlier(&mut self) {
        self.changed = true;
        self.book = self.original_book.clone();
        self.slots = self.original_slots.clone();
        self.touched.clear();
        self.afters.clear();
    }

    /// REJECT, replacing the proposal with `state` (None keeps the current state).
    pub fn reject(&mut self, state: Option<State>, reason: impl Into<String>) {
        let type_changes = state.as_ref().map(|s| s.kind) != Some(self.intended);
        if type_changes {
            self.fizzle_earlier();
        }
        self.proposed = state;
        self.status = Status::Reject;
        self.details = Details::RejectDetails {
            reason: reason.into(),
        };
    }

    /// WAIT: the client should propose the same state again after `delay_seconds`.
    pub fn delay(&mut self, delay_seconds: i64, reason: impl Into<String>) {
        self.fizzle_earlier();
        self.proposed = None;
        self.status = Status::Wait;
        self.details = Details::WaitDetails {
            delay_seconds,
            reason: reason.into(),
        };
    }

    /// ABORT: the client gives the run up.
    pub fn abort(&mut self, reason: impl Into<String>) {
        self.fizzle_earlier();
        self.proposed = None;
        self.status = Status::Abort;
        self.details = Details::AbortDetails {
            reason: reason.into(),
        };
    }

    pub fn after(&mut self, effect: After) {
        self.afters.push(effect);
    }

    /// Whether rules may still run: nothing changed the proposed type yet.
    fn live(&self) -> bool {
        !self.changed && self.proposed.as_ref().is_some_and(|p| p.kind == self.intended)
    }

    /// Marks a limit's slots as changed.
    pub fn touch(&mut self, tag: &str) {
        self.touched.insert(tag.to_string());
    }
}

/// Runs `rules` for the context, then bookkeeping, then after-hooks, and returns the decision.
pub fn run(ctx: &TransitionContext, rules: &[RuleSpec], bookkeeping: fn(&mut Transition<'_>)) -> Decision {
    let mut t = Transition::new(ctx);
    let initial = ctx.initial.as_ref().map(|s| s.kind);
    let selected: Vec<&RuleSpec> = rules
        .iter()
        .filter(|r| r.from.contains(initial) && r.to.contains(Some(ctx.proposed.kind)))
        .collect();
    for rule in selected.iter().filter(|r| !r.universal) {
        if !t.live() {
            break;
        }
        (rule.run)(&mut t);
    }
    if t.proposed.is_some() {
        bookkeeping(&mut t);
        for rule in selected.iter().filter(|r| r.universal) {
            (rule.run)(&mut t);
        }
        if !t.changed {
            let afters = std::mem::take(&mut t.afters);
            for effect in afters.into_iter().rev() {
                apply_after(&mut t, effect);
            }
        }
    }
    let cache_insert = t.pending_cache.take();
    let tag_limits = t
        .slots
        .iter()
        .filter(|l| t.touched.contains(&l.tag))
        .cloned()
        .collect();
    Decision {
        status: t.status,
        details: t.details,
        book: if t.proposed.is_some() {
            t.book
        } else {
            ctx.book.clone()
        },
        state: t.proposed,
        tag_limits,
        cache_insert,
    }
}

fn apply_after(t: &mut Transition<'_>, effect: After) {
    match effect {
        After::AddPauseKey(key) => {
            if !t.book.flow_policy.pause_keys.contains(&key) {
                t.book.flow_policy.pause_keys.push(key);
            }
        }
        After::SetResuming => t.book.flow_policy.resuming = true,
        After::TrackFlowRunCount(count) => t.book.flow_run_run_count = count,
        After::InsertCache => {
            if let Some(state) = &t.proposed {
                if let Some(key) = &state.state_details.cache_key {
                    t.pending_cache = Some((key.clone(), state.state_details.cache_expiration));
                }
            }
        }
    }
}
