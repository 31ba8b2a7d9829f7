//! How rules run (Prefect 2.20's `src/prefect/server/orchestration/rules.py`: `BaseOrchestrationRule`, `OrchestrationContext`).
//!
//! * Rules are chosen up front by the intended transition (initial type or None, proposed
//!   type) and run in priority order.
//! * Once a rule changes the proposed *type* (a reject to another type or to None, a delay,
//!   an abort), the rules after it are skipped and the rules before it "fizzle": what they
//!   did is undone (their cleanup) and their after-hooks never run. The rule that made the
//!   change does not fizzle: whatever it did before or while changing the type stands,
//!   but it registers no after-hook.
//! * A rename keeps the type and stops nothing.
//! * The global bookkeeping then runs on the final proposed state (nothing when it is
//!   None), then the universal transforms of the policy, then the after-hooks of the rules
//!   that did not fizzle, in reverse order.

use chrono::{DateTime, Utc};

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
            // ALL minus some types still includes None.
            (States::AllBut(_), None) => true,
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
    /// HandlePausingFlows: remember the pause key.
    AddPauseKey(String),
    /// HandleResumingPausedFlows: `empirical_policy.resuming = true`.
    SetResuming,
    /// UpdateFlowRunTrackerOnTasks: `flow_run_run_count = <the flow run's run_count>`.
    TrackFlowRunCount(i32),
    /// CacheInsertion: cache the validated state under its `cache_key`.
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
    /// The run's bookkeeping as rules and transforms change it.
    pub book: RunBook,
    /// The tag limits of the run as rules change them.
    pub slots: Vec<TagLimit>,
    intended: StateType,
    changed: bool,
    afters: Vec<After>,
    cache_insert: Option<(String, Option<DateTime<Utc>>)>,
}

pub type Rule = fn(&mut Transition<'_>);

/// A rule with the transitions it is chosen for.
pub struct RuleSpec {
    pub name: &'static str,
    pub from: States,
    pub to: States,
    pub run: Rule,
    /// Universal transforms run after the bookkeeping, on any non-null final state,
    /// whatever other rules did.
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
            intended: ctx.proposed.kind,
            changed: false,
            afters: Vec::new(),
            cache_insert: None,
        }
    }

    /// The server's clock for this transition.
    pub fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    /// The timestamp of a state a rule creates: `now`, but never before the proposal's
    /// own timestamp (which the database layer keeps after the current state's, so that
    /// `(run, timestamp)` stays unique and ordered).
    pub fn stamp(&self) -> DateTime<Utc> {
        self.ctx.now.max(self.ctx.proposed.timestamp)
    }

    /// A new state of this type made by a rule: a fresh id, stamped by [`Self::stamp`].
    pub fn new_state(&self, kind: StateType) -> State {
        State::new(kind, self.stamp())
    }

    pub fn initial(&self) -> Option<&State> {
        self.ctx.initial.as_ref()
    }

    pub fn initial_type(&self) -> Option<StateType> {
        self.ctx.initial.as_ref().map(|s| s.kind)
    }

    /// The proposal. Rules only run while it exists, so the fallback to the original
    /// proposal is never observed.
    pub fn proposal(&self) -> &State {
        self.proposed.as_ref().unwrap_or(&self.ctx.proposed)
    }

    pub fn proposal_mut(&mut self) -> Option<&mut State> {
        self.proposed.as_mut()
    }

    /// Renames the proposal; the type stays, so no rule is skipped.
    pub fn rename(&mut self, name: &str) {
        if let Some(p) = self.proposed.as_mut() {
            p.name = name.to_string();
        }
    }

    /// The rules entered before this one fizzle because the proposed type changes: their
    /// effects on the run are undone and their after-hooks dropped.
    fn fizzle_earlier(&mut self) {
        self.changed = true;
        self.book = self.ctx.book.clone();
        self.slots = self.ctx.tag_limits.clone();
        self.afters.clear();
    }

    /// REJECT, replacing the proposal with `state` (None keeps the current state).
    pub fn reject(&mut self, state: Option<State>, reason: impl Into<String>) {
        if state.as_ref().map(|s| s.kind) != Some(self.intended) {
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

    /// Registers an after-hook: applied once the state is written, unless a later rule
    /// changes the proposed type.
    pub fn after(&mut self, effect: After) {
        self.afters.push(effect);
    }

    /// Whether the next rule may run: nothing changed the proposed type yet.
    fn live(&self) -> bool {
        !self.changed && self.proposed.as_ref().is_some_and(|p| p.kind == self.intended)
    }
}

/// The rules of `policy` chosen for this transition, in priority order.
pub fn select<'r>(ctx: &TransitionContext, policy: &'r [RuleSpec]) -> Vec<&'r RuleSpec> {
    let initial = ctx.initial.as_ref().map(|s| s.kind);
    policy
        .iter()
        .filter(|r| r.from.contains(initial) && r.to.contains(Some(ctx.proposed.kind)))
        .collect()
}

/// Runs `policy` for the context, then bookkeeping, the universal transforms and the
/// after-hooks, and returns the decision.
pub fn run(ctx: &TransitionContext, policy: &[RuleSpec], bookkeeping: Rule) -> Decision {
    let mut t = Transition::new(ctx);
    let selected = select(ctx, policy);
    for rule in selected.iter().filter(|r| !r.universal) {
        (rule.run)(&mut t);
        if !t.live() {
            tracing::debug!(rule = rule.name, status = ?t.status, details = ?t.details, "orchestration rule changed the proposed state type");
            break;
        }
    }
    if t.proposed.is_some() {
        bookkeeping(&mut t);
        for rule in selected.iter().filter(|r| r.universal) {
            (rule.run)(&mut t);
        }
        let afters = std::mem::take(&mut t.afters);
        for effect in afters.into_iter().rev() {
            apply_after(&mut t, effect);
        }
    }
    let tag_limits = t
        .slots
        .iter()
        .zip(&ctx.tag_limits)
        .filter(|(now, before)| now.active_slots != before.active_slots)
        .map(|(now, _)| now.clone())
        .collect();
    let book = if t.proposed.is_some() {
        t.book
    } else {
        ctx.book.clone()
    };
    Decision {
        status: t.status,
        details: t.details,
        state: t.proposed,
        book,
        tag_limits,
        cache_insert: t.cache_insert,
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
                if let Some(key) = state.state_details.cache_key.as_ref().filter(|k| !k.is_empty()) {
                    t.cache_insert = Some((key.clone(), state.state_details.cache_expiration));
                }
            }
        }
    }
}
