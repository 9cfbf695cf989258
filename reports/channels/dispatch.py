"""Deliver what the outbox holds: bounded retries with exponential backoff and jitter.

Within a run each delivery gets ``attempts_per_run`` tries, ``base_delay_s · 2^k`` apart (± jitter,
capped at ``max_delay_s``, or the receiver's ``Retry-After`` if longer), and the whole run stops
trying after ``run_budget_s``. A delivery that still fails stays ``pending`` with
``next_attempt_at`` = now + ``next_run_delay_s · 2^(attempts-1)`` (capped): the next run — the daily
schedule, or the sensor — sends it. An endpoint that exhausted its retries is not tried again for
other alerts in the same run (they stay pending, untouched). Nothing is dropped: only a permanent
refusal ends in ``failed``, and only an unconfigured channel in ``skipped``.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
from dataclasses import dataclass, field

from reports.channels import ChannelError


@dataclass
class RetryPolicy:
    attempts_per_run: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    jitter: float = 0.25
    run_budget_s: float = 120.0
    next_run_delay_s: float = 60.0
    next_run_max_delay_s: float = 6 * 3600.0
    sleep: object = field(default=time.sleep, repr=False)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_env(cls, env=None) -> RetryPolicy:
        env = os.environ if env is None else env
        p = cls()
        for key, attr, cast in (
            ("PVTRACE_ALERT_ATTEMPTS_PER_RUN", "attempts_per_run", int),
            ("PVTRACE_ALERT_RETRY_BASE_S", "base_delay_s", float),
            ("PVTRACE_ALERT_RUN_BUDGET_S", "run_budget_s", float),
            ("PVTRACE_ALERT_NEXT_RUN_DELAY_S", "next_run_delay_s", float),
        ):
            if env.get(key):
                setattr(p, attr, cast(env[key]))
        return p

    def backoff(self, k: int, retry_after_s: float | None = None) -> float:
        delay = min(self.max_delay_s, self.base_delay_s * 2**k)
        delay *= 1 + self.jitter * (2 * self.rng.random() - 1)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_delay_s))
        return max(0.0, delay)

    def next_run_after(self, attempts: int) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.next_run_max_delay_s, self.next_run_delay_s * 2 ** max(0, attempts - 1)))


def deliver_pending(outbox, channels: dict, policy: RetryPolicy | None = None, log=None) -> dict[str, int]:
    """Send every due delivery once it is claimed; return counts by outcome."""
    policy = policy or RetryPolicy()
    counts = {"sent": 0, "retry_later": 0, "failed": 0, "skipped": 0, "deferred": 0}
    deadline = time.monotonic() + policy.run_budget_s
    down: set[tuple[str, str]] = set()
    for d in outbox.due():
        channel = channels.get(d.channel)
        try:
            reason = f"channel {d.channel!r} not available" if channel is None else channel.unavailable(d)
            endpoint = None if reason else (d.channel, channel.endpoint(d))
        except Exception as e:
            reason = f"channel misconfigured: {type(e).__name__}: {e}"
        if reason:
            outbox.mark_skipped(d, reason)
            counts["skipped"] += 1
            continue
        if endpoint in down or time.monotonic() > deadline:
            counts["deferred"] += 1  # stays as it is (pending / in doubt) for the next run
            continue
        for k in range(policy.attempts_per_run):
            outbox.claim(d)
            started = outbox.clock()
            try:
                sent = channel.send(d)
            except Exception as e:
                err = e if isinstance(e, ChannelError) else ChannelError(f"{type(e).__name__}: {e}")
                if err.permanent:
                    outbox.mark_failed(
                        d,
                        destination=err.destination,
                        error=str(err),
                        response_code=err.response_code,
                        started_at=started,
                    )
                    counts["failed"] += 1
                    if log:
                        log.warning(f"{d.idempotency_key}: permanent failure: {err}")
                    break
                outbox.mark_retry(
                    d,
                    destination=err.destination,
                    error=str(err),
                    response_code=err.response_code,
                    next_attempt_at=outbox.clock() + policy.next_run_after(d.attempts),
                    started_at=started,
                )
                last = k + 1 == policy.attempts_per_run
                wait = 0.0 if last else policy.backoff(k, err.retry_after_s)
                if last or time.monotonic() + wait > deadline:
                    counts["retry_later"] += 1
                    down.add(endpoint)
                    if log:
                        log.warning(
                            f"{d.idempotency_key}: still failing after {k + 1} tries, pending for the next run: {err}"
                        )
                    break
                policy.sleep(wait)
            else:
                outbox.mark_sent(
                    d,
                    destination=sent.destination,
                    response_code=sent.response_code,
                    message_id=sent.message_id,
                    started_at=started,
                    note=sent.note,
                )
                counts["sent"] += 1
                break
    return counts
