"""Reconciliation, the pure matching of sent rows to ledger entries: examples and properties.

Untagged rows are matched by what their entries hold (``_bulk.lookalike``), tagged rows by
the tag in the note (``_bulk.tags`` and ``_bulk.ledger``). The properties draw random
ledgers of one member full of look-alikes (same amount and note) and check that a row is
never marked applied on an entry that is not its own.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from inveterate_async import AdjustmentRow, AdjustmentState, Credit, CreditAdjustment
from inveterate_async._bulk.ledger import Ledger, contradiction, find, read_ledger
from inveterate_async._bulk.lookalike import (
    Entry,
    Finding,
    Sent,
    Standing,
    Verdict,
    entry_key,
    entry_of,
    reconcile,
)
from inveterate_async._bulk.tags import ref_of, ref_problem, tagged_note

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)
SKEW = timedelta(seconds=60)
SETTLE = timedelta(seconds=300)
AMOUNTS = (Decimal("5.00"), Decimal("-2.50"), Decimal("10"))
NOTES = ("Gold bonus", "", "Refund #1001")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sent(
    ref: str,
    amount: str = "5.00",
    note: str = "Gold bonus",
    first: float = 0,
    last: float | None = None,
    standing: Standing = Standing.UNDECIDED,
) -> Sent:
    return Sent(
        ref, Decimal(amount), note, at(first), at(first if last is None else last), standing
    )


def entry(
    key: str, amount: str = "5.00", note: str = "Gold bonus", created: float | None = 1
) -> Entry:
    return Entry(key, Decimal(amount), note, None if created is None else at(created))


def settled_at(now: datetime) -> Callable[[Sent], bool]:
    """A row's window is over ``SETTLE`` after its last send (as a run decides it)."""
    return lambda row: now >= row.last_sent_at + SETTLE


def decide(
    rows: list[Sent], entries: list[Entry], claimed: frozenset[str] = frozenset(), now: float = 1
) -> dict[str, Finding]:
    findings = reconcile(rows, entries, claimed, settled=settled_at(at(now)), skew=SKEW)
    return {finding.ref: finding for finding in findings}


# --- examples ------------------------------------------------------------------------------


def test_one_match_is_applied_with_its_entry() -> None:
    found = decide([sent("a")], [entry("other", amount="4.99"), entry("mine")])
    assert found["a"].verdict is Verdict.MATCHED
    assert found["a"].entry == entry("mine")


def test_no_match_waits_until_the_settle_window_is_over() -> None:
    rows = [sent("a", first=0)]
    assert decide(rows, [], now=299.9)["a"].verdict is Verdict.WAIT
    assert decide(rows, [], now=300)["a"].verdict is Verdict.UNCONFIRMED


def test_a_group_waits_until_every_rows_window_is_over() -> None:
    rows = [sent("a", first=0, last=500), sent("b", first=10)]
    assert decide(rows, [], now=700)["b"].verdict is Verdict.WAIT
    assert decide(rows, [], now=800)["b"].verdict is Verdict.UNCONFIRMED


def test_whether_a_window_is_over_is_the_callers_to_say() -> None:
    asked: list[str] = []

    def settled(row: Sent) -> bool:
        asked.append(row.ref)
        return row.ref != "open"

    rows = [sent("a"), sent("open", standing=Standing.CONFIRMED), sent("x", amount="1.00")]
    found = reconcile(rows, [], frozenset(), settled=settled, skew=SKEW)
    assert [(f.ref, f.verdict) for f in found] == [("a", Verdict.WAIT), ("x", Verdict.UNCONFIRMED)]
    assert sorted(set(asked)) == ["a", "open", "x"]  # a 2xx sibling's window counts too


def test_entries_before_the_send_minus_skew_or_claimed_are_not_candidates() -> None:
    rows = [sent("a", first=100)]
    entries = [entry("old", created=39), entry("taken", created=200)]
    assert decide(rows, entries, frozenset({"taken"}), now=500)["a"].verdict is Verdict.UNCONFIRMED
    # Within the skew allowance, an entry stamped before the send still counts.
    assert decide(rows, [entry("skewed", created=40)])["a"].entry == entry("skewed", created=40)


def test_amount_is_compared_by_value_and_note_exactly() -> None:
    rows = [sent("a", amount="5.00")]
    assert decide(rows, [entry("e", amount="5")])["a"].verdict is Verdict.MATCHED
    assert decide(rows, [entry("e", note="gold bonus")])["a"].verdict is Verdict.WAIT


def test_more_candidates_than_rows_needs_review_with_the_candidates() -> None:
    rows = [sent("a"), sent("b", amount="1.00")]
    entries = [entry("e2", created=5), entry("e1", created=2), entry("x", amount="1.00")]
    found = decide(rows, entries)
    assert found["a"].verdict is Verdict.AMBIGUOUS
    assert [e.key for e in found["a"].candidates] == ["e1", "e2"]  # oldest first
    assert found["b"].verdict is Verdict.MATCHED  # another group, decided on its own


def test_identical_rows_share_their_entries_and_the_rest_are_not_applied() -> None:
    rows = [sent("a", first=0), sent("b", first=5), sent("c", first=10)]
    found = decide(rows, [entry("e1", created=20), entry("e2", created=30)], now=400)
    verdicts = Counter(finding.verdict for finding in found.values())
    assert verdicts == {Verdict.MATCHED: 2, Verdict.UNCONFIRMED: 1}
    assert {f.entry.key for f in found.values() if f.entry is not None} == {"e1", "e2"}


def test_a_row_answered_2xx_explains_an_entry_first() -> None:
    rows = [sent("a"), sent("ok", standing=Standing.CONFIRMED)]
    found = decide(rows, [entry("e1")], now=400)
    assert found == {"a": Finding("a", Verdict.UNCONFIRMED)}
    found = decide(rows, [entry("e1"), entry("e2")])
    assert found["a"].verdict is Verdict.MATCHED


def test_an_entry_too_early_for_one_row_goes_to_the_row_it_fits() -> None:
    rows = [sent("late", first=1000), sent("early", first=0)]
    found = decide(rows, [entry("e", created=10)], now=2000)
    assert found["early"].entry == entry("e", created=10)
    assert found["late"].verdict is Verdict.UNCONFIRMED


def test_a_group_under_review_stays_under_review() -> None:
    rows = [sent("a"), sent("seen", standing=Standing.UNDER_REVIEW)]
    found = decide(rows, [entry("e1")])
    assert list(found) == ["a"]
    assert found["a"].verdict is Verdict.AMBIGUOUS


def test_a_resent_row_with_an_extra_look_alike_needs_review() -> None:
    resent = Sent("r", Decimal("5.00"), "Gold bonus", at(0), at(400), Standing.RESENT, "e2")
    # Its own entry alone, or with a 2xx sibling's: nothing to say.
    assert decide([resent], [entry("e2", created=401)], now=2000) == {}
    sibling = sent("s", standing=Standing.CONFIRMED)
    assert decide([resent, sibling], [entry("e1"), entry("e2", created=401)]) == {}
    # Its first send, applied after the window, shows next to it: applied twice.
    found = decide([resent], [entry("e1", created=350), entry("e2", created=401)], now=2000)
    assert found["r"].verdict is Verdict.AMBIGUOUS
    assert [e.key for e in found["r"].candidates] == ["e1", "e2"]


def test_an_undecided_row_never_takes_a_resent_rows_own_entry() -> None:
    resent = Sent("r", Decimal("5.00"), "Gold bonus", at(0), at(0), Standing.RESENT, "e2")
    found = decide([sent("u", first=0), resent], [entry("e2", created=1), entry("e1", created=2)])
    assert found == {"u": Finding("u", Verdict.MATCHED, entry("e1", created=2))}


def test_groups_without_undecided_rows_give_no_finding() -> None:
    assert decide([sent("ok", standing=Standing.CONFIRMED)], [entry("e")]) == {}


def test_entries_without_a_time_fit_every_row_and_come_last() -> None:
    found = decide([sent("a", first=1000)], [entry("n", created=None)])
    assert found["a"].entry == entry("n", created=None)
    found = decide([sent("a"), sent("b")], [entry("n", created=None), entry("t", created=5)])
    assert [found["a"].entry, found["b"].entry] == [entry("t", created=5), entry("n", created=None)]


def test_entry_keys_are_ids_or_a_fingerprint() -> None:
    stamped = Credit(Decimal("5.00"), at(0), Decimal("15.00"), note="n", raw={"id": 7})
    assert entry_key(stamped) == "7"
    unnamed = Credit(Decimal("5.00"), at(0), Decimal("15.00"), note="n", raw={"id": True})
    assert entry_key(unnamed) == "2026-11-02T10:00:00+00:00|5.00|15.00|n"
    bare = Credit(Decimal("1"))
    assert entry_key(bare) == "|1|None|"
    assert entry_of(bare) == Entry("|1|None|", Decimal(1), "", None, has_id=False)


# --- tagged rows: the tag, and what a ledger says of a row ----------------------------------


def test_a_tag_is_the_notes_last_ref_marker() -> None:
    assert tagged_note("Gold bonus", "gold:1") == "Gold bonus [ref:gold:1]"
    assert tagged_note(None, "a") == tagged_note("", "a") == "[ref:a]"
    assert ref_of("Gold bonus [ref:gold:1]") == "gold:1"
    assert ref_of("[ref:a]") == "a"
    assert ref_of("x [ref:a] [ref:b]") == "b"
    for untagged in (
        None,
        "",
        "Gold bonus",
        "Gold[ref:a]",  # not a word of its own
        "Gold [ref:a] later",  # not at the end
        "Gold [ref:a]\n",
        "Gold [ref:]",
        "Gold [ref:a b]",
        "Gold [ref:a[b]",
        "Gold [ref:a",
    ):
        assert ref_of(untagged) is None, untagged
    assert ref_problem("gold:1/ü") is None
    assert ref_problem("a b") == ref_problem("a]") == ref_problem("[") is not None


REF_TEXT = st.text(min_size=1, max_size=20).filter(lambda ref: ref_problem(ref) is None)


@given(st.none() | st.text(max_size=40), REF_TEXT)
def test_a_tagged_note_splits_back_into_its_note_and_ref(note: str | None, ref: str) -> None:
    tagged = tagged_note(note, ref)
    assert ref_of(tagged) == ref
    rest = tagged.removesuffix(f"[ref:{ref}]")
    assert (rest.removesuffix(" ") if note else rest) == (note or "")  # so no two collide


class Ledgerless:
    """The three calls of the bulk layer, over a fixed list of credits."""

    def __init__(self, credits: list[Credit]) -> None:
        self.credits = credits

    async def get_credits_page(self, customer_id: str, *, limit: int | None = None) -> Any:
        raise NotImplementedError

    async def iter_credits(self, customer_id: str) -> AsyncIterator[Credit]:
        for credit in self.credits:
            yield credit

    async def create_credit(
        self, customer_id: str, amount: Decimal, *, note: str | None, force: bool | None
    ) -> Any:
        raise NotImplementedError


def ledger_of(credits: list[Credit], *, keep_all: bool = False) -> Ledger:
    return asyncio.run(read_ledger(Ledgerless(credits), "42", keep_all=keep_all))


def credit(key: str, amount: str, note: str | None) -> Credit:
    return Credit(Decimal(amount), at(1), note=note, raw={"id": key})


def row(ref: str, amount: str = "5.00") -> AdjustmentRow:
    return AdjustmentRow(CreditAdjustment(ref, "42", amount), AdjustmentState.UNKNOWN, attempts=1)


def test_a_tagged_row_is_matched_by_its_one_entry_of_the_same_amount() -> None:
    ledger = ledger_of(
        [
            credit("mine", "5.0", "Gold [ref:a]"),
            credit("other", "5.00", "Gold [ref:b]"),
            credit("plain", "5.00", "Gold"),
            credit("twice-1", "1.00", "[ref:c]"),
            credit("twice-2", "1.00", "[ref:c]"),
            credit("wrong", "4.00", "[ref:d]"),
        ]
    )
    assert set(ledger.tagged) == {"a", "b", "c", "d"}
    assert ledger.entries == ()  # only the tagged entries are kept
    found = find(ledger, row("a"))
    assert (found.verdict, found.entry) == (
        Verdict.MATCHED,
        Entry("mine", Decimal("5.0"), "Gold [ref:a]", at(1)),
    )
    assert find(ledger, row("e")) == Finding("e", Verdict.UNCONFIRMED)
    twice = find(ledger, row("c", "1.00"))
    assert twice.verdict is Verdict.AMBIGUOUS
    assert [e.key for e in twice.candidates] == ["twice-1", "twice-2"]
    assert contradiction(twice, row("c", "1.00")) == "2 ledger entries carry its tag"
    resent = attrs.evolve(row("c", "1.00"), attempts=2, resends=1)
    assert contradiction(twice, resent) == "2 ledger entries carry its tag (applied twice)"
    wrong = find(ledger, row("d"))
    assert wrong.verdict is Verdict.AMBIGUOUS
    assert contradiction(wrong, row("d")) == "its tagged entry has amount 4.00, not 5.00"
    assert (
        len(ledger_of([credit("x", "1", "n"), credit("y", "1", "[ref:a]")], keep_all=True).entries)
        == 2
    )


TAGGED_REFS = ("r1", "r10", "gold:1", "a/b", "ü")
NOISE = (
    "Gold [ref:{ref}] more",
    "Gold[ref:{ref}]",
    "Gold [ref:{ref}]\n",
    "Gold [ref:{ref}x]",
    "Gold [ref:{ref}] [ref:elsewhere]",
    "Gold [ref:{ref}",
    "Gold",
)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_tagged_rows_are_decided_by_the_entries_with_their_tag_alone(data: st.DataObject) -> None:
    refs = data.draw(st.lists(st.sampled_from(TAGGED_REFS), min_size=1, unique=True))
    credits: list[Credit] = []
    own: dict[str, list[tuple[str, Decimal]]] = {}
    for ref in refs:
        own[ref] = []
        for n in range(data.draw(st.integers(0, 2))):
            amount = "5.00" if data.draw(st.integers(0, 3)) else "5.01"
            key = f"own-{ref}-{n}"
            own[ref].append((key, Decimal(amount)))
            credits.append(credit(key, amount, f"Gold [ref:{ref}]"))
    for n in range(data.draw(st.integers(0, 6))):
        template = data.draw(st.sampled_from(NOISE))
        ref = data.draw(st.sampled_from(TAGGED_REFS))
        credits.append(credit(f"noise-{n}", "5.00", template.format(ref=ref)))
    ledger = ledger_of(data.draw(st.permutations(credits)))
    for ref in refs:
        found = find(ledger, row(ref))
        mine = sorted(own[ref])
        if not mine:
            assert found.verdict is Verdict.UNCONFIRMED
        elif len(mine) == 1 and mine[0][1] == Decimal("5.00"):
            assert found.verdict is Verdict.MATCHED
            assert found.entry is not None
            assert found.entry.key == mine[0][0]
        else:
            assert found.verdict is Verdict.AMBIGUOUS
            assert sorted((e.key, e.amount) for e in found.candidates) == mine


# --- properties ----------------------------------------------------------------------------


@attrs.frozen
class World:
    """Rows of one member, the truth about them, and a read of the ledger."""

    rows: list[Sent]
    applied: dict[str, bool]  # ref -> whether the API really applied it
    entries: list[Entry]
    claimed: frozenset[str]
    now: datetime
    hidden: bool  # some applied row's entry is not visible yet

    def findings(self) -> list[Finding]:
        settled = settled_at(self.now)
        return reconcile(self.rows, self.entries, self.claimed, settled=settled, skew=SKEW)


@st.composite
def worlds(draw: st.DrawFn, tagged: bool) -> World:
    """Rows, which of them were applied (and are visible), and a ledger with their entries
    among look-alikes that are not theirs: older than the window, claimed by other journal
    rows, of another amount, or (tagged) with another ref or no ref at all."""
    rows: list[Sent] = []
    applied: dict[str, bool] = {}
    entries: list[Entry] = []
    hidden = False
    for i in range(draw(st.integers(1, 8))):
        ref = f"r{i}"
        base = draw(st.sampled_from(NOTES))
        note = f"{base} [ref:{ref}]".lstrip() if tagged else base
        first = draw(st.integers(0, 600))
        last = first + draw(st.sampled_from([0, 0, 400]))
        confirmed = draw(st.integers(0, 3)) == 0
        amount = str(draw(st.sampled_from(AMOUNTS)))
        standing = Standing.CONFIRMED if confirmed else Standing.UNDECIDED
        rows.append(sent(ref, amount, note, first, last, standing))
        applied[ref] = confirmed or draw(st.booleans())
        if applied[ref]:
            if draw(st.booleans()):
                created = at(first + draw(st.integers(0, 200)))
                entries.append(Entry(f"own-{ref}", Decimal(amount), note, created))
            else:
                hidden = True
    claimed: set[str] = set()
    kinds = ["before", "claimed", "other amount"] + (["other ref", "untagged"] if tagged else [])
    for j in range(draw(st.integers(0, 8))):
        model = draw(st.sampled_from(rows))
        group_start = min(
            r.first_sent_at for r in rows if (r.amount, r.note) == (model.amount, model.note)
        )
        kind = draw(st.sampled_from(kinds))
        amount_value, note, created = model.amount, model.note, at(draw(st.integers(-9999, 2000)))
        if kind == "before":
            created = group_start - SKEW - timedelta(seconds=draw(st.integers(1, 10**6)))
        elif kind == "claimed":
            claimed.add(f"foreign-{j}")
        elif kind == "other amount":
            amount_value += Decimal("0.01")
        elif kind == "other ref":
            note = model.note.replace("[ref:", "[ref:elsewhere-")
        else:
            note = model.note.rsplit("[ref:", 1)[0].rstrip()
        entries.append(Entry(f"foreign-{j}", amount_value, note, created))
    return World(
        rows,
        applied,
        draw(st.permutations(entries)),
        frozenset(claimed),
        at(draw(st.integers(0, 1500))),
        hidden,
    )


def check_common(world: World, findings: list[Finding]) -> None:
    undecided = [row.ref for row in world.rows if row.standing is Standing.UNDECIDED]
    assert [finding.ref for finding in findings] == undecided
    keys = [f.entry.key for f in findings if f.entry is not None]
    assert len(keys) == len(set(keys)), "an entry was claimed twice"
    for finding in findings:
        if finding.verdict is Verdict.MATCHED:
            assert finding.entry is not None
            assert finding.entry.key.startswith("own-"), f"claimed someone else's: {finding}"
            assert finding.entry.key not in world.claimed


@settings(max_examples=200, deadline=None)
@given(worlds(tagged=True))
def test_tagged_rows_only_ever_match_their_own_entry(world: World) -> None:
    findings = world.findings()
    check_common(world, findings)
    visible = {entry.key for entry in world.entries}
    for finding in findings:
        if finding.verdict is Verdict.MATCHED:
            assert finding.entry is not None
            assert finding.entry.key == f"own-{finding.ref}"
        else:  # a tagged row whose entry is visible is found at once
            assert f"own-{finding.ref}" not in visible


@settings(max_examples=200, deadline=None)
@given(worlds(tagged=False))
def test_untagged_rows_never_count_more_applied_than_were(world: World) -> None:
    findings = world.findings()
    check_common(world, findings)
    verdicts = {finding.ref: finding.verdict for finding in findings}
    groups: dict[tuple[Decimal, str], list[Sent]] = {}
    for row in world.rows:
        groups.setdefault((row.amount, row.note), []).append(row)
    for group in groups.values():
        undecided = [row for row in group if row.standing is Standing.UNDECIDED]
        matched = sum(verdicts[row.ref] is Verdict.MATCHED for row in undecided)
        really = sum(world.applied[row.ref] for row in undecided)
        assert matched <= really, "a row was marked applied that was not"
        if not world.hidden:
            # Everything applied is visible: the ledger tells the whole truth.
            assert matched == really
            not_applied = sum(verdicts[row.ref] is Verdict.UNCONFIRMED for row in undecided)
            settled = world.now >= max(row.last_sent_at for row in group) + SETTLE
            assert not_applied == (len(undecided) - really if settled else 0)


@settings(max_examples=100, deadline=None)
@given(worlds(tagged=True), st.data())
def test_a_row_applied_twice_needs_review(world: World, data: st.DataObject) -> None:
    row = data.draw(st.sampled_from(world.rows))
    twice = [Entry(f"dup-{n}", row.amount, row.note, row.first_sent_at) for n in range(2)]
    world = attrs.evolve(world, entries=[*world.entries, *twice])
    findings = {finding.ref: finding for finding in world.findings()}
    if row.standing is Standing.UNDECIDED:
        assert findings[row.ref].verdict is Verdict.AMBIGUOUS
        assert {"dup-0", "dup-1"} <= {e.key for e in findings[row.ref].candidates}
