"""The error catalogue: every error code the ledger and its API answer with, its HTTP status(es) and its message
template (``{...}`` names what the message fills in). The README's table "Error codes" is made from it
(``python -m ledger.core.error_codes``), and ``tests/test_error_codes.py`` holds the table, this catalogue and the codes the
source emits equal.

A problem's category (``errors.Category``) decides its status; a code with two statuses is used in two situations
(the message says which). Flags (lawful but concerning, stored with the event) are not errors: README, "What the
ledger checks".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: tuple[int, ...]  # HTTP status(es) it is answered with
    message: str  # the message template


# Codes made from a JSON Schema keyword that failed (``catalogue.validate``): schema_<keyword>, e.g. schema_pattern.
SCHEMA_KEYWORD_PREFIX = "schema_"

CATALOGUE: tuple[ErrorCode, ...] = (
    ErrorCode("schema_<keyword>", (422,), "(the JSON Schema validator's message for that keyword)"),
    ErrorCode("access_log_scope", (403,), "{principal.org} may read the views by its own principals (org={principal.org})"),
    ErrorCode("already_corrected", (422,), "event {new.corrects} is already superseded by {later.event_id}; correct that one instead"),
    ErrorCode("already_decided", (422,), "the LA decided this request on {a.decided_on} ({a.decision}); correct that event instead"),
    ErrorCode("already_initialised", (409,), "{settings.home} is already initialised / the database already holds a ledger"),
    ErrorCode(
        "already_registered", (422,), "{state.org_id} is already registered / the pupil is on {self.who}'s roll on or after {self.day}"
    ),
    ErrorCode(
        "already_settled",
        (422,),
        "this {what} already has its {'certificate' if what != 'appeal' else 'decision'}; correct that event instead",
    ),
    ErrorCode("as_of_range", (422,), "as_of must be between {EARLIEST_DATE} and {LATEST_DATE}"),
    ErrorCode("assessment_closed", (422,), "this assessment ended on {a.closed_on} ({a.outcome})"),
    ErrorCode(
        "assessment_open",
        (422,),
        "{new.submitter}'s assessment request for this pupil is still open: decide it, or issue or refuse to issue the plan, before recording another",
    ),
    ErrorCode("assessment_unknown", (422,), "no ehcp.assessment_requested with that event_id is recorded for this pupil"),
    ErrorCode("attended_over_possible", (422,), "attended_sessions exceeds possible_sessions"),
    ErrorCode("auth_rate_limited", (429,), "too many unknown tokens from this address; retry after {math.ceil(wait)} s"),
    ErrorCode(
        "backdated_revocation",
        (422,),
        "an organisation's own revocation takes effect when received or at a later time; only {OPERATOR} may state a past revocation time",
    ),
    ErrorCode("bad_tree_sizes", (422,), "need 1 <= first <= second <= {latest} (the latest checkpoint)"),
    ErrorCode(
        "band_not_in_tariff",
        (422,),
        "the tariff in force on {day} (from {tariff.effective_from}) has no price for band {d['band']} in {d['provision_type']}",
    ),
    ErrorCode("batch_empty", (422,), "the batch has no envelopes"),
    ErrorCode("batch_shape", (400,), 'the body is {"envelopes": [envelope, ...]}'),
    ErrorCode("batch_too_large", (413,), "at most {limit} envelopes per batch"),
    ErrorCode("before_decision", (422,), "{new.occurred_on} is before the decision on {decision.on}"),
    ErrorCode("before_plan", (422,), "{day} is before the plan was issued on {plan.issued_on}"),
    ErrorCode(
        "before_relationship",
        (403,),
        "this event occurred before {reader.principal.org}'s own link with the pupil began; it reads what occurred from {grant.since} (docs/access.md)",
    ),
    ErrorCode(
        "before_request", (422,), "{new.occurred_on} is before the {what} on {dispute.on} / {day} is before the request on {a.requested_on}"
    ),
    ErrorCode("body_too_large", (413,), "{reason}"),
    ErrorCode(
        "budget_exists",
        (422,),
        "{new.subject} has an AP budget for {d['financial_year']} (event {existing.event_id}): a change is a correction naming it in corrects, not a second budget",
    ),
    ErrorCode("budget_split_mismatch", (422,), "the split by tier sums to {split} pence, not amount_pence {d['amount_pence']}"),
    ErrorCode(
        "commit_unconfirmed",
        (504,),
        "the database stopped answering while committing: the request may or may not have been stored. Resubmit the same bytes once /healthz is ok: an event already stored is answered 200 with its receipt",
    ),
    ErrorCode("correction_not_own", (403,), "event {new.corrects} was posted by another organisation; only its submitter may correct it"),
    ErrorCode("correction_target_unknown", (422,), "no event {new.corrects} is recorded for this subject"),
    ErrorCode(
        "correction_type",
        (422,),
        "a retraction is final: post the event again, with a new event_id / a correction of a {target.type} must have the same type (or be pupil.record_retracted)",
    ),
    ErrorCode("correction_year", (422,), "the budget corrected is for {corrected.data['financial_year']}: a correction keeps the year"),
    ErrorCode("corrects_required", (422,), "a retraction names the event it retracts (corrects)"),
    ErrorCode(
        "database_unavailable",
        (503,),
        "the database is not answering; nothing was stored. Retry after Retry-After seconds / the database is not answering",
    ),
    ErrorCode("date_out_of_range", (422,), "{day} is outside {EARLIEST_DATE}..{today + MAX_PLANNING_HORIZON}"),
    ErrorCode("date_too_early", (422,), "occurred_on is before {EARLIEST_DATE}"),
    ErrorCode(
        "decision_unknown",
        (422,),
        "no appealable LA decision with that event_id is recorded for this pupil (a refusal to assess or to issue, a final plan, an amendment, a review or a cessation)",
    ),
    ErrorCode("duplicate_in_batch", (422,), "event_id also used by item {seen[event_id]} of this batch"),
    ErrorCode("duplicate_price", (422,), "band {key[0]} for {key[1]} is priced twice"),
    ErrorCode("duplicate_setting", (422,), "{setting['setting']} is listed twice"),
    ErrorCode("duplicate_tier", (422,), "tier {tier} is listed twice"),
    ErrorCode("duplicate_year", (422,), "{year} is listed twice"),
    ErrorCode("empty_body", (400,), "the request body is empty"),
    ErrorCode(
        "end_before_start",
        (422,),
        "{day} is before occurred_on {occurred_on} / the period ends before it starts / {self.day} is before the start on {episode.start}",
    ),
    ErrorCode("envelope_missing_field", (400,), "{field} is required"),
    ErrorCode("envelope_not_object", (400,), "the envelope must be a JSON object"),
    ErrorCode("envelope_unknown_field", (400,), "unknown envelope field {unknown[0]}"),
    ErrorCode(
        "event_id_conflict",
        (409,),
        "event_id {row.event_id} is already taken by another event: a replay sends the same envelope, a new event a new event_id",
    ),
    ErrorCode("exclusion_school", (422,), "that exclusion was not recorded by {self.d['school']}"),
    ErrorCode("exclusion_unknown", (422,), "no exclusion with that event_id is recorded for this pupil"),
    ErrorCode("financial_year", (422,), "{label} is no financial year: write the year it starts and the next, e.g. 2025-26"),
    ErrorCode("forbidden_scope", (403,), "{caller.org} ({caller.role}) may not read the figures of {scope} (docs/access.md: aggregates)"),
    ErrorCode("from_range", (422,), "from must be between {EARLIEST_DATE} and {LATEST_DATE}"),
    ErrorCode(
        "future_date", (422,), "occurred_on {occurred_on} is after today ({today}) / reported_at is in the future by the ledger's clock"
    ),
    ErrorCode("gias_columns", (422,), "missing column(s): {', '.join(missing)}"),
    ErrorCode("gias_date", (422,), "{value} is not a date (DD-MM-YYYY)"),
    ErrorCode("gias_value", (422,), "{reason}"),
    ErrorCode("grounds_not_decision", (422,), "{', '.join(wrong)} cannot be disputed on a {decision.type}"),
    ErrorCode("http_error", (404, 405), "{str(exc.detail)}"),
    ErrorCode(
        "implausible_claim",
        (422,),
        "{self.who} has no recorded link to this pupil: the pupil is not on roll (nor was last) at a school in its area, it has no earlier record of the pupil, and the pupil's last removal was not to an unknown place, home education, CME or out of the area / a subsidiary (S) registration is made by the pupil's AP setting (an ap_setting, or the setting of a placement open that day) or by a school in the same LA or trust as the pupil's main school that day; no such link is recorded",
    ),
    ErrorCode(
        "impossible_date",
        (422,),
        "{body['occurred_on']} is not a calendar date / reported_at is not a valid UTC timestamp / {value} is not a valid UTC timestamp / {value} is not a calendar date",
    ),
    ErrorCode("index_or_event_id", (400,), "give exactly one of index and event_id"),
    ErrorCode("inspection_unknown", (422,), "no inspection.started with that event_id is recorded for {org_id}"),
    ErrorCode("insufficient_storage", (507,), "the ledger's storage is full; nothing was stored"),
    ErrorCode("internal_error", (500,), "the ledger could not answer; quote reference {reference} to the operator"),
    ErrorCode("invalid_body", (422,), "{e['msg']}"),
    ErrorCode("key_already_revoked", (422,), "key {d['key_id']} was revoked at {key.revoked_at.isoformat()}"),
    ErrorCode("key_exists", (422,), "that key is already registered"),
    ErrorCode("key_id_mismatch", (422,), "the key id of that public key is {key_id(raw)}"),
    ErrorCode("key_id_taken", (409,), "key {kid} is registered to another organisation"),
    ErrorCode("key_not_submitters", (403,), "key {kid} belongs to {owner}, not to the submitter {submitter}"),
    ErrorCode("key_not_yet_valid", (403,), "key {kid} of {submitter} is valid from {key.added_at.isoformat()}"),
    ErrorCode("key_revoked", (403,), "key {kid} of {submitter} was revoked at {key.revoked_at.isoformat()}"),
    ErrorCode("key_unknown", (403,), "{state.org_id} has no key {d['key_id']} / key {kid} is not registered for {submitter}"),
    ErrorCode("keyid_repeated", (400,), "key {kid} signs at most once in an envelope"),
    ErrorCode("keyid_shape", (400,), "keyid is a key id: 16 lowercase hexadecimal characters"),
    ErrorCode("kind_mismatch", (422,), "{state.org_id} cannot be of kind {d['kind']}"),
    ErrorCode("known_at_range", (422,), "known_at must be between {EARLIEST_DATE.year} and {LATEST_DATE.year}"),
    ErrorCode("known_at_zone", (422,), "known_at needs a time zone, e.g. 2026-09-04T10:00:00Z"),
    ErrorCode("malformed_json", (400,), "the body is not JSON: {exc}"),
    ErrorCode("mediation_unknown", (422,), "no mediation request about this decision with that event_id is recorded"),
    ErrorCode(
        "no_agreed_assessment",
        (422,),
        "{t} follows an agreement to assess{', and the LA refused to assess' if a.decision == 'refuse' else ', and none is recorded'}",
    ),
    ErrorCode(
        "no_checkpoint",
        (404, 409),
        "{f'no checkpoint of size {size} was signed' if size is not None else 'the log has no checkpoint yet'} / the log has no signed checkpoint yet: seal it first (pupil-ledger seal)",
    ),
    ErrorCode("no_draft", (422,), "a final plan follows a draft plan (ehcp.draft_issued)"),
    ErrorCode("no_plan", (422,), "{t} is about an EHC plan, and none is recorded for this pupil"),
    ErrorCode("no_such_tile", (404,), "tile/{tile_path} is not in the latest checkpoint's tree / {str(exc)}"),
    ErrorCode("no_tariff_in_force", (422,), "no national tariff is in force on {day}"),
    ErrorCode("not_an_area", (422,), "an area SEND inspection is about a local area partnership: subject.org is la:NNN"),
    ErrorCode(
        "not_found",
        (404,),
        "the ledger has no events for this pupil / the ledger has no events for this pupil (never recorded, or already erased) / no event {event_id} that you may read / no release {release_id} with a file {name} that you may read",
    ),
    ErrorCode("not_in_tree", (404,), "the entry is not in the tree of size {size} (not yet sealed?)"),
    ErrorCode("not_in_variables", (422,), "{variable} is not among the approved variables"),
    ErrorCode("not_on_roll", (422,), "the pupil was not on {self.who}'s roll {when}"),
    ErrorCode("not_own_provider_id", (403,), "{new.submitter} can only assign ids uprov:{la_code_of(new.submitter)}-N"),
    ErrorCode(
        "not_owner",
        (403,),
        "only {state.la} records events about {state.org_id} / only the organisation that started this {what}{' (or its setting)' if kind == 'placement' else ''} may update it",
    ),
    ErrorCode("not_related", (403,), "{why}"),
    ErrorCode("not_researcher", (422,), "{new.subject} is not a researcher organisation"),
    ErrorCode("not_submitter", (403,), "{field_name} must be the submitter ({self.who}) / school must be the submitter ({self.who})"),
    ErrorCode("not_unregistered_provider", (422,), "an unregistered provider id is uprov:<la>-<n>"),
    ErrorCode(
        "not_yet_sealed",
        (404,),
        "the event is accepted but not yet in a signed checkpoint; retry within {ledger.settings.max_merge_delay} s",
    ),
    ErrorCode("operator_only", (403,), "only the operator (an admin token) reads the report of unusual claims"),
    ErrorCode(
        "org_closed",
        (422,),
        "{state.org_id} is closed / {self.who} closed on {closed}: it may post only events dated on or before its closure / {self.who} has closed: it starts no new registration, placement or case (it may still record removals, ends and corrections dated on or before its closure)",
    ),
    ErrorCode("org_id", (422,), "{problem}"),
    ErrorCode("org_level", (422,), "a {level.value} is identified by {' or '.join(SCHEMES[level])} ids, not {org}"),
    ErrorCode("org_required", (422,), "give the {level.value}'s organisation id"),
    ErrorCode("org_unknown", (422,), "{org} is not registered / {state.org_id} is not registered"),
    ErrorCode(
        "outcome_framework",
        (422,),
        "a 2016-framework inspection has outcome wsoa or no_wsoa; a 2023-framework one positive, inconsistent or widespread_failings",
    ),
    ErrorCode("payload_not_base64", (400,), "payload must be a base64 string / payload is not standard base64"),
    ErrorCode("payload_not_canonical", (400,), "payload is not RFC 8785 (JCS) canonical JSON; canonicalise it before signing"),
    ErrorCode(
        "payload_not_json",
        (400,),
        "payload is not JSON: {exc} / payload nests arrays or objects too deeply / payload holds a value beyond what the ledger parses (an integer of thousands of digits?)",
    ),
    ErrorCode("payload_not_object", (400,), "payload must be a JSON object"),
    ErrorCode("payload_type", (400,), "payloadType must be {payload_type}"),
    ErrorCode("period", (422,), "the period ends after it starts / the period must lie between years 1 and 9999"),
    ErrorCode(
        "placement_already_open",
        (422,),
        "{self.who} already has an open placement of this pupil at {self.d['setting']}; review it (hours, planned end) or end it first",
    ),
    ErrorCode("placement_not_open", (422,), "no AP placement started by event {ref} is open on {day}"),
    ErrorCode("plan_ceased", (422,), "the plan ceased on {plan.ceased_on}"),
    ErrorCode(
        "plan_overlap",
        (422,),
        "version {latest.version} is in force from {latest.valid_from}: a new version starts after that and supersedes it from its start; this one would overlap all of it",
    ),
    ErrorCode(
        "plan_version_exists",
        (422,),
        "version {d['version']} is published (event {same.event_id}): to change it, post a correction naming it in corrects; a new version takes the next number",
    ),
    ErrorCode("plan_version_order", (422,), "version {latest.version} is published: a new version is numbered after it"),
    ErrorCode(
        "programme_exists",
        (422,),
        "{new.subject} has joined {d['programme']}: a change to the agreed path is a correction naming the earlier event in corrects",
    ),
    ErrorCode(
        "project_exists",
        (409,),
        "project {project_id} is already approved / project {d['project']} is already approved (revoke it, or approve a new id)",
    ),
    ErrorCode("project_expired", (403,), "project {project.project_id}'s approval expired on {project.expires_on}"),
    ErrorCode(
        "project_revoked",
        (403, 409),
        "project {project.project_id} was revoked on {project.revoked_on} / project {d['project']} was already revoked on {project.revoked_on}",
    ),
    ErrorCode(
        "project_unknown",
        (404,),
        "no project {project_id} / {new.subject} has no project {d['project']} / no project {project_id} of yours",
    ),
    ErrorCode("public_key", (422,), "not base64 of a raw 32-byte Ed25519 public key"),
    ErrorCode("pupil_erased", (409,), "this pupil's record has been erased"),
    ErrorCode("purpose_not_allowed", (403,), "a {principal.role} may read for {', '.join(allowed)}, not {stated}"),
    ErrorCode("purpose_required", (400,), "a {principal.role} must state a purpose: one of {', '.join(allowed)}"),
    ErrorCode("rate_limited", (429,), "too many requests; retry after {math.ceil(wait)} s"),
    ErrorCode("removal_before_admission", (422,), "removal on {self.day} is before admission on {reg.start}"),
    ErrorCode("reported_before_occurred", (422,), "reported_at is before occurred_on"),
    ErrorCode("required", (422,), "(the JSON Schema validator's message)"),
    ErrorCode("revoked_before_added", (422,), "key {d['key_id']} was added at {key.added_at.isoformat()}"),
    ErrorCode(
        "role_cannot_export",
        (403,),
        "a {caller.role} token has no research projects / a {principal.role} token cannot make research exports",
    ),
    ErrorCode(
        "role_cannot_read_pupils",
        (403,),
        "a {principal.role} token cannot read identified pupil records{' (only exports)' if principal.role == 'researcher' else ' (aggregates and cases only)'}",
    ),
    ErrorCode("role_cannot_submit", (403,), "a {principal.role} token cannot post {event_type}"),
    ErrorCode(
        "rule_probe_limited",
        (429,),
        "{org} has had too many submissions rejected because of other organisations' records of pupils; submissions about pupils it has no record of resume in {math.ceil(wait)} s",
    ),
    ErrorCode(
        "scope",
        (422,),
        "an inspector token names the inspected schools or areas (--scope); other roles take none / {org_in_scope} is not a school (urn:NNNNNN) or an area (la:NNN)",
    ),
    ErrorCode(
        "second_main_registration",
        (422,),
        "the pupil has a main registration at another school open on or after this date; that school must post pupil.deregistered first (dated on or before this admission), or register this one as S (subsidiary)",
    ),
    ErrorCode("sensitive_and_quasi_identifier", (422,), "{variable} cannot be both a quasi-identifier and a sensitive attribute"),
    ErrorCode("series_length", (422,), "a series has at most {MAX_POINTS} points: shorten it or step by term"),
    ErrorCode("series_range", (422,), "from ({from_}) is after to ({m.as_of})"),
    ErrorCode("setting_mismatch", (422,), "the setting is the placement's own (or leave it out)"),
    ErrorCode("setting_type_mismatch", (422,), "a setting {self.d['setting']} has setting_type {' or '.join(expected)}"),
    ErrorCode(
        "signature_invalid",
        (403,),
        "the signature by key {kid} does not verify over this payload / the signature by key {kid} does not verify",
    ),
    ErrorCode("signature_missing", (403,), "the envelope carries no signature"),
    ErrorCode("signature_not_base64", (400,), "sig is not standard base64"),
    ErrorCode("signature_shape", (400,), 'each signature is {"keyid", "sig"} / keyid and sig must be strings'),
    ErrorCode("signatures_not_array", (400,), "signatures must be an array"),
    ErrorCode(
        "subject_kind",
        (422,),
        "{etype.name} is about a pupil: give subject.upn / {etype.name} is about a pupil's audit pseudonym: give subject.pupil / {etype.name} is about an organisation: give subject.org",
    ),
    ErrorCode("submitter_mismatch", (403,), "the bearer token is for {principal.org} but the event's submitter is {submitter}"),
    ErrorCode(
        "submitter_not_allowed",
        (403, 422),
        "{etype.name} cannot be posted by {submitter}: {problem} / {body['type']} is posted by {ADMIN_ORG} or the organisation itself",
    ),
    ErrorCode("submitter_unknown", (403,), "{submitter} is not a registered organisation"),
    ErrorCode(
        "tariff_exists",
        (422,),
        "a tariff effective from {day} is recorded (event {same.event_id}): to change it, post a correction naming it in corrects",
    ),
    ErrorCode("tariff_subject", (422,), "the national tariff is a record of {TARIFF_ORG}"),
    ErrorCode("token_invalid", (401,), "the bearer token is unknown, expired or revoked"),
    ErrorCode("token_missing", (401,), "send Authorization: Bearer <token>"),
    ErrorCode(
        "too_many_waiting_reads",
        (429,),
        "at most {self.per_token} reads with min_sequence may wait at once per token; retry after Retry-After seconds",
    ),
    ErrorCode("transfer_to_self", (422,), "the plan is maintained by {new.submitter} already"),
    ErrorCode("unit_not_approved", (403,), "project {project.project_id} is approved for unit {project.unit}"),
    ErrorCode("unknown_checkpoint", (404,), "no checkpoint of tree size {tree_size} was signed"),
    ErrorCode(
        "unknown_code", (422,), "{value} is not in code list {sub['x-code-list']} for {year} / {stated} is not in code list access_purposes"
    ),
    ErrorCode("unknown_event", (404,), "no event {event_id}"),
    ErrorCode("unknown_field", (422,), "(the JSON Schema validator's message)"),
    ErrorCode("unknown_metric", (422,), "no metric named {names} (docs/metrics.md)"),
    ErrorCode("unknown_pupil", (422,), "{self.who} has never had this pupil on roll"),
    ErrorCode("unknown_type", (422,), "unknown event type {type_name}; see schemas/events/"),
    ErrorCode("unprocessable", (422,), "the ledger could not process this envelope; quote reference {reference} to the operator"),
    ErrorCode("unsupported_media_type", (415,), "send the body as JSON: Content-Type: application/json (UTF-8)"),
    ErrorCode("upn_check_letter", (422,), "the UPN's check letter (character 1) is wrong"),
    ErrorCode("upn_format", (422,), "a UPN is a letter, 11 digits, then a digit or letter / {last} is not used in temporary UPNs"),
    ErrorCode("upn_la_code", (422,), "characters 2-4 ({upn[1:4]}) are not a recognised LA code"),
    ErrorCode(
        "variable_not_approved",
        (403,),
        "{name} is not among project {project.project_id}'s approved variables ({', '.join(project.variables)})",
    ),
    ErrorCode("view_behind", (503,), "the views have not yet reached sequence {min_sequence}; retry shortly"),
    ErrorCode(
        "weak_public_key",
        (422,),
        "not a usable Ed25519 public key: it must be a canonically encoded curve point of large prime order (small-order, mixed-order, off-curve and non-canonical keys let forged signatures verify)",
    ),
    ErrorCode(
        "writer_not_related",
        (422,),
        "{self.who} records attendance at a setting where it had the pupil (on roll, or as the setting of a placement) or at the setting of a placement it commissioned / {self.who} has had no relationship with this pupil (on roll, as a placement's setting, or as the LA of a school the pupil attended or with an earlier record of the pupil) / a review of an exclusion is recorded by the excluding school or the LA it is in",
    ),
)


def by_code() -> dict[str, ErrorCode]:
    return {entry.code: entry for entry in CATALOGUE}


def readme_table() -> str:
    """The README's table of error codes (Markdown)."""
    rows = ["| code | HTTP status | message |", "|---|---|---|"]
    for entry in sorted(CATALOGUE, key=lambda e: e.code):
        message = entry.message.replace("|", "\\|")
        rows.append(f"| `{entry.code}` | {', '.join(str(s) for s in entry.status)} | {message} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(readme_table(), end="")
