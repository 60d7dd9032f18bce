"""The bus as its parties see it, in AsyncAPI 3.0: what a Kafka client writes and reads.

An administration's developer integrates from this document, so it is generated from what the
bus itself enforces and never written by hand: the catalog's Avro schemas (a provider's topics),
the applied contracts' projected schemas (a subscriber's delivery topics), the headers the
publisher and the router write, the principals the broker authenticates and the erasure notices
a withdrawal sends. A contract applied or a dataset version added changes the document with it.

Payloads are Avro, given as AsyncAPI multi-format schemas (:data:`AVRO_FORMAT`) with the very
schema the registry holds under the topic's subject, so a code generator or a reader sees what
a deserializer will. Headers are the CloudEvents Kafka binding (binary mode): each attribute is
a ``ce_<name>`` header holding UTF-8 text, and the content type is ``content-type``.

Pure: no Kafka, no registry, no clock (the caller says which instant the entitlements are for).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from schemas.catalog import SUBJECT_KINDS, Catalog, Dataset, SubjectKind, UnknownDataset
from schemas.cloudevent import AVRO_CONTENT_TYPE, EVENT_ID
from schemas.projection import DeliverySchema, ProjectionError
from schemas.registration import value_subject
from streams.security import principals
from streams.security.access import SUBSCRIBER_GROUPS, entitles
from streams.state.contract import Contract

ASYNCAPI_VERSION: Final = "3.0.0"
AVRO_FORMAT: Final = "application/vnd.apache.avro+json;version=1.9.0"
"""The AsyncAPI schema format of an Avro 1.9 schema in its JSON form."""
KAFKA_BINDING: Final = "0.5.0"
STANDARD_WEBHOOKS: Final = ("https://github.com/standard-webhooks/standard-webhooks/blob/main/"
                            "spec/standard-webhooks.md")
ERASURE_SOURCE: Final = "circulation"
ERASURE_TYPE: Final = "erasure_notice"
_SUBJECT_SHAPES: Final[Mapping[SubjectKind, tuple[str, str]]] = {
    "person": (r"^ps2_[0-9a-f]{64}$", "the subscriber's own pseudonym of the person"),
    "company": (r"^[0-9]{9}$", "the company's SIREN"),
}
_PROVIDER_SUBJECTS: Final[Mapping[SubjectKind, tuple[str, str]]] = {
    "person": (r"^sr1_[0-9a-f]{64}$",
               "the person's subject reference (sr1_ + HMAC of the NIR under the subject "
               "secret, made at the edge by `circulation publish`); never the NIR itself"),
    "company": (r"^[0-9]{9}$", "the company's SIREN"),
}
_DAY: Final = "midnight UTC of a day (RFC 3339): the bus tells no instant finer than the day"


class UnknownParty(LookupError):
    """A provider or subscriber the document cannot describe; names the option, not the value."""


@dataclass(frozen=True)
class BusAddress:
    """Where parties connect: the Kafka bootstrap servers and the schema registry's API (any
    credential written into its URL left out: the document is handed to other parties)."""

    bootstrap: str
    registry_url: str
    security_protocol: str = "SASL_SSL"
    """How parties reach the brokers (the bus's ``security_protocol`` setting): the document
    says what the cluster it was made from requires, not what a production one would."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.registry_url)
        if parts.username is not None or parts.password is not None:
            public = parts._replace(netloc=parts.netloc.rpartition("@")[2])
            object.__setattr__(self, "registry_url", urlunsplit(public))


@dataclass(frozen=True)
class Scope:
    """Whose topics the document describes: providers by catalog id, subscribers by id."""

    providers: tuple[str, ...]
    subscribers: tuple[str, ...]


def entitling(contracts: Iterable[Contract], at: datetime) -> list[Contract]:
    """The contracts whose subscriber may read their delivery topic at ``at`` (pending ones
    included: their topic exists; ended ones until their erasure notices may still come)."""
    return sorted((c for c in contracts if entitles(c, at)), key=lambda c: c.id)


def scope(catalog: Catalog, contracts: Sequence[Contract], provider: str | None = None,
          subscriber: str | None = None) -> Scope:
    """The parties named, each checked; without either, every provider and subscriber."""
    known_subscribers = tuple(sorted({c.subscriber for c in contracts}))
    if provider is None and subscriber is None:
        return Scope(catalog.providers(), known_subscribers)
    if provider is not None and provider not in catalog.providers():
        raise UnknownParty(f"--provider: no provider of that id in the catalog "
                           f"(providers: {', '.join(catalog.providers())})")
    if subscriber is not None and subscriber not in known_subscribers:
        raise UnknownParty(f"--subscriber: no applied contract entitles a subscriber of that "
                           f"id (subscribers: {', '.join(known_subscribers) or 'none'})")
    return Scope(() if provider is None else (provider,),
                 () if subscriber is None else (subscriber,))


def document(catalog: Catalog, contracts: Sequence[Contract], chosen: Scope,
             address: BusAddress, version: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``chosen``'s topics; ``contracts`` are those in force or
    still readable (:func:`entitling`), ``version`` the document's own (``info.version``)."""
    parts = [*(_provider_part(catalog, p) for p in chosen.providers),
             *(_contract_part(catalog, c) for c in contracts if c.subscriber in chosen.subscribers)]
    schemes = {name: scheme for part in parts for name, scheme in part.schemes.items()}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(chosen, version),
        "defaultContentType": AVRO_CONTENT_TYPE,
        "servers": {"bus": _server(address, schemes)},
        "channels": {name: c for part in parts for name, c in part.channels.items()},
        "operations": {name: o for part in parts for name, o in part.operations.items()},
        "components": {"messages": {n: m for part in parts for n, m in part.messages.items()},
                       "securitySchemes": schemes},
    }


@dataclass(frozen=True)
class _Part:
    """What one provider topic or one contract adds to the document."""

    channels: dict[str, Any]
    operations: dict[str, Any]
    messages: dict[str, Any]
    schemes: dict[str, Any]


def _info(chosen: Scope, version: str) -> dict[str, Any]:
    """Title and description: which parties, and what holds for every subscriber."""
    who = [*(f"provider {p}" for p in chosen.providers),
           *(f"subscriber {s}" for s in chosen.subscribers)]
    description = (
        "Topics of the Circulation bus for: " + (", ".join(who) or "nobody") + ".\n\n"
        "Every record is a CloudEvent in the Kafka binary mode: its attributes are `ce_*` "
        "headers holding UTF-8 text, its value is Avro in the Confluent wire format (a zero "
        "byte, the 4-byte schema id, the datum), its schema registered under the topic's "
        "subject. No raw NIR is on any topic: a person is named by a subject reference on "
        "provider topics and by the subscriber's own pseudonym on delivery topics.")
    if chosen.subscribers:
        description += "\n\n" + _WEBHOOK_NOTE
    return {"title": "Circulation", "version": version, "description": description}


_WEBHOOK_NOTE = (
    "Webhook delivery: a contract whose file has a `delivery.webhook` section is also delivered "
    "to the administration's HTTPS endpoint by the bus's webhook sink, which POSTs each delivery "
    "signed as Standard Webhooks specifies: `webhook-id` (the delivery's id, the same across "
    "retries: deduplicate on it), `webhook-timestamp` (seconds since the epoch) and "
    "`webhook-signature` (`v1,` + base64 HMAC-SHA256 of `<webhook-id>.<webhook-timestamp>."
    "<body>` under the endpoint's secret; during a rotation two signatures may be listed, "
    "either valid). Verify with any Standard Webhooks library before reading the body.")


def _server(address: BusAddress, schemes: Mapping[str, Any]) -> dict[str, Any]:
    """The Kafka cluster as parties reach it, and its schema registry."""
    first = address.bootstrap.split(",", 1)[0].strip()
    secured = address.security_protocol == "SASL_SSL"
    how = ("TLS with SASL/SCRAM-SHA-512 (security.protocol SASL_SSL); each party connects as "
           "its own principal and is allowed its own topics and nothing else"
           if secured else
           f"security.protocol {address.security_protocol}: a development cluster, "
           "without the authentication a production one requires")
    return {
        "host": first,
        "protocol": "kafka-secure" if address.security_protocol.endswith("SSL") else "kafka",
        "description": (f"Bootstrap servers: {address.bootstrap}. {how}. The schema registry "
                        "speaks the Confluent API"
                        + ("; the same credential opens it." if secured else ".")),
        "security": [_scheme_ref(name) for name in schemes] if secured else [],
        "bindings": {"kafka": {"schemaRegistryUrl": address.registry_url,
                               "schemaRegistryVendor": "confluent",
                               "bindingVersion": KAFKA_BINDING}},
    }


def _scheme(principal: principals.Principal, role: str) -> dict[str, Any]:
    """SCRAM-SHA-512 as ``principal``, whose password only ``credentials create`` prints."""
    return {"type": "scramSha512",
            "description": (f"SASL/SCRAM-SHA-512 over TLS as the principal {principal.name}, "
                            f"which {role}. Its password is printed once by `circulation "
                            f"credentials create {principal.name}` and kept by nobody else.")}


def _scheme_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/securitySchemes/{_pointer(name)}"}


def _pointer(name: str) -> str:
    """``name`` as a JSON Pointer token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")


def _avro(schema: Any) -> dict[str, Any]:
    """An Avro schema as an AsyncAPI multi-format schema."""
    return {"schemaFormat": AVRO_FORMAT, "schema": schema}


def _headers(properties: Mapping[str, dict[str, Any]], optional: Iterable[str] = ()
             ) -> dict[str, Any]:
    """The headers' schema: every one required but the ``optional`` ones."""
    left_out = set(optional)
    return {"type": "object", "properties": dict(properties),
            "required": [name for name in properties if name not in left_out]}


def _const(value: str, description: str) -> dict[str, Any]:
    return {"type": "string", "const": value, "description": description}


def _subject_header(kinds: Iterable[SubjectKind],
                    shapes: Mapping[SubjectKind, tuple[str, str]]) -> dict[str, Any]:
    """``ce_subject`` (and the key): one shape per kind of subject the topic carries."""
    chosen = sorted(set(kinds))
    pattern = "|".join(shapes[kind][0] for kind in chosen)
    described = "; or ".join(shapes[kind][1] for kind in chosen)
    return {"type": "string", "pattern": pattern,
            "description": described[:1].upper() + described[1:]}


def _operation(action: str, channel: str, messages: Iterable[str], principal: str,
               description: str, **extra: Any) -> dict[str, Any]:
    """A send or receive on ``channel``, secured by ``principal``'s scheme."""
    pointer = _pointer(channel)
    return {"action": action, "channel": {"$ref": f"#/channels/{pointer}"},
            "description": description, "security": [_scheme_ref(principal)],
            "messages": [{"$ref": f"#/channels/{pointer}/messages/{_pointer(m)}"}
                         for m in messages], **extra}


def _channel(topic: str, title: str, description: str, messages: Iterable[str],
             config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A topic as a channel whose messages are described under ``components``."""
    binding: dict[str, Any] = {"topic": topic, "bindingVersion": KAFKA_BINDING}
    if config:
        binding["topicConfiguration"] = dict(config)
    return {"address": topic, "title": title, "description": description,
            "messages": {m: {"$ref": f"#/components/messages/{_pointer(m)}"} for m in messages},
            "bindings": {"kafka": binding}}


def _message_binding(key: dict[str, Any], lookup: str) -> dict[str, Any]:
    return {"kafka": {"key": key, "schemaIdLocation": "payload",
                      "schemaIdPayloadEncoding": "confluent", "schemaLookupStrategy": lookup,
                      "bindingVersion": KAFKA_BINDING}}


def _provider_part(catalog: Catalog, provider: str) -> _Part:
    """A provider's topics: one per dataset it publishes, each written by it alone."""
    principal = principals.provider(provider)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for dataset in catalog.datasets_of(provider):
        topic = catalog.topic_for(provider, dataset.id)
        messages[topic] = _provider_message(provider, dataset, topic)
        channels[topic] = _channel(
            topic, f"{dataset.id} from {provider}",
            f"Changes of {dataset.id} about a {dataset.subject_kind}, published by {provider} "
            f"alone; routed to every contract that names the dataset.", [topic])
        operations[f"send.{topic}"] = _operation(
            "send", topic, [topic], principal.name,
            f"{provider} publishes {dataset.id} (as {principal.name}).")
    return _Part(channels, operations, messages,
                 {principal.name: _scheme(principal, f"writes provider.{provider}.* topics")})


def _provider_message(provider: str, dataset: Dataset, topic: str) -> dict[str, Any]:
    """One change event of ``dataset`` as the provider writes it: the latest schema version."""
    subject = _subject_header([dataset.subject_kind], _PROVIDER_SUBJECTS)
    latest = dataset.latest
    headers = {
        "ce_specversion": _const("1.0", "CloudEvents version."),
        "ce_id": {"type": "string", "pattern": f"^{EVENT_ID.pattern}$",
                  "description": "The provider's id for the event, unique per provider: a UUID "
                                 "or its own short token."},
        "ce_source": _const(provider, "The provider: the topic's, or the event is refused."),
        "ce_type": _const(dataset.id, "The dataset: the topic's, or the event is refused."),
        "ce_subject": subject,
        "ce_time": {"type": "string", "format": "date-time",
                    "description": "When the change happened (RFC 3339 with an offset)."},
        "content-type": _const(AVRO_CONTENT_TYPE, "The value's content type."),
    }
    return {
        "name": dataset.id, "title": f"{dataset.id} v{latest.version}",
        "summary": f"A change of {dataset.id}, Avro schema version {latest.version}.",
        "contentType": AVRO_CONTENT_TYPE,
        "headers": _headers(headers, optional=["ce_time"]),
        "payload": _avro(latest.raw),
        "bindings": _message_binding(subject, f"TopicNameStrategy ({value_subject(topic)})"),
    }


def _contract_part(catalog: Catalog, contract: Contract) -> _Part:
    """A contract's delivery topic: its deliveries and the erasure notices about them."""
    principal = principals.subscriber(contract.subscriber)
    topic = contract.delivery_topic
    messages = _contract_messages(catalog, contract)
    description = _contract_description(contract)
    if f"{contract.id}.delivery" not in messages:
        description += (" It no longer matches the catalog: nothing is delivered under it until "
                        "a corrected contract is applied.")
    config = {"cleanup.policy": ["delete"], "retention.ms": contract.retention_ms}
    channel = _channel(topic, f"Deliveries of contract {contract.id}", description, messages,
                       config)
    return _Part({topic: channel},
                 {f"receive.{topic}": _receive(contract, principal.name, messages)}, messages,
                 {principal.name: _scheme(principal, f"reads its own delivery topics "
                                                     f"(deliver.{contract.subscriber}.*)")})


def _contract_messages(catalog: Catalog, contract: Contract) -> dict[str, Any]:
    """Its deliveries and its erasure notices; only the notices when the contract no longer
    compiles against the catalog (the router withholds its events then, audited
    ``contract_invalid``), so that one such contract never keeps the others' document away."""
    erasure = f"{contract.id}.{ERASURE_TYPE}"
    try:
        schema = contract.delivery_schema(catalog)
        kinds = [catalog.dataset(d).subject_kind for d in contract.datasets]
    except (ProjectionError, UnknownDataset):
        return {erasure: _erasure_message(catalog, contract, SUBJECT_KINDS)}
    return {f"{contract.id}.delivery": _delivery_message(catalog, contract, kinds, schema),
            erasure: _erasure_message(catalog, contract, kinds)}


def _receive(contract: Contract, principal: str, messages: Iterable[str]) -> dict[str, Any]:
    """The subscriber's reading of the topic: its principal, its consumer groups, its webhook."""
    prefix = _groups(contract.subscriber)
    group = {"type": "string", "pattern": "^" + prefix.replace(".", "[.]") + ".+$",
             "description": f"Any group whose name starts with {prefix}"}
    return _operation(
        "receive", contract.delivery_topic, messages, principal,
        f"{contract.subscriber} reads its deliveries under {contract.id} (as {principal}), "
        f"and erases what an erasure notice names.",
        bindings={"kafka": {"groupId": group, "bindingVersion": KAFKA_BINDING}},
        tags=[{"name": "standard-webhooks",
               "description": "Also delivered by signed webhook when the contract has a "
                              "delivery.webhook section (see the document's description).",
               "externalDocs": {"url": STANDARD_WEBHOOKS}}])


def _groups(subscriber: str) -> str:
    """The prefix of the consumer groups a subscriber may use (ids hold no dot)."""
    return f"{SUBSCRIBER_GROUPS}{subscriber}."


def _contract_description(contract: Contract) -> str:
    """The contract's terms, as its file states them."""
    until = contract.valid_until.isoformat() if contract.valid_until else "no end date"
    revoked = f" Revoked at {contract.revoked_at.isoformat()}." if contract.revoked_at else ""
    return (f"Contract {contract.id} of {contract.subscriber} (SIRET "
            f"{contract.subscriber_siret}), for: {contract.purpose}. Legal basis: "
            f"{contract.legal_basis}. Valid from {contract.valid_from.isoformat()} to {until}; "
            f"consent {contract.consent}, population {contract.population}; deliveries are "
            f"kept {contract.retention} (retention.ms), then deleted.{revoked}")


def _delivery_message(catalog: Catalog, contract: Contract, kinds: Sequence[SubjectKind],
                      schema: DeliverySchema) -> dict[str, Any]:
    """A delivery: the event cut down to the contract's fields, under its projected schema."""
    subject = _subject_header(kinds, _SUBJECT_SHAPES)
    sources = sorted({p for d in contract.datasets for p in catalog.dataset(d).providers})
    headers = {
        "ce_specversion": _const("1.0", "CloudEvents version."),
        "ce_id": {"type": "string", "format": "uuid",
                  "description": "This subscriber's own id for the event: the same on a "
                                 "replay, so deduplicate on it; never shared with another "
                                 "subscriber."},
        "ce_source": {"type": "string", "enum": sources, "description": "The provider."},
        "ce_type": {"type": "string", "enum": list(contract.datasets),
                    "description": "The dataset: it names the payload's branch."},
        "ce_subject": subject,
        "ce_time": {"type": "string", "format": "date-time",
                    "description": f"The day of the change: {_DAY}."},
        "content-type": _const(AVRO_CONTENT_TYPE, "The value's content type."),
        "ce_contract": _const(contract.id, "CloudEvents extension `contract`."),
        "ce_purpose": _const(contract.purpose, "CloudEvents extension `purpose`."),
        "ce_legalbasis": _const(contract.legal_basis, "CloudEvents extension `legalbasis`."),
        "ce_expiresat": {"type": "string", "format": "date-time",
                         "description": "CloudEvents extension `expiresat`: erase the delivery "
                                        f"by then, the day its retention ends ({_DAY})."},
    }
    return {
        "name": "delivery", "title": f"Delivery under {contract.id}",
        "summary": f"Only the fields contract {contract.id} names: "
                   + "; ".join(f"{d}: {', '.join(f)}" for d, f in contract.datasets.items()),
        "contentType": AVRO_CONTENT_TYPE,
        "headers": _headers(headers, optional=["ce_time"]),
        "payload": _avro(schema),
        "bindings": _message_binding(subject, f"TopicNameStrategy "
                                              f"({contract.delivery_subject})"),
    }


def _erasure_message(catalog: Catalog, contract: Contract,
                     kinds: Sequence[SubjectKind]) -> dict[str, Any]:
    """An erasure notice: the bus telling the subscriber to erase what it holds on a subject."""
    subject = _subject_header(kinds, _SUBJECT_SHAPES)
    headers = {
        "ce_specversion": _const("1.0", "CloudEvents version."),
        "ce_id": {"type": "string", "format": "uuid", "description": "The notice's id."},
        "ce_source": _const(ERASURE_SOURCE, "The bus itself."),
        "ce_type": _const(ERASURE_TYPE, "Tells a notice from a delivery."),
        "ce_subject": subject,
        "ce_time": {"type": "string", "format": "date-time",
                    "description": "When the bus issued the notice."},
        "content-type": _const(AVRO_CONTENT_TYPE, "The value's content type."),
        "ce_contract": _const(contract.id, "CloudEvents extension `contract`."),
    }
    return {
        "name": ERASURE_TYPE, "title": f"Erasure notice under {contract.id}",
        "summary": "Erase everything received under this contract about the subject named.",
        "description": ("Sent on the delivery topic when a person withdraws consent or objects "
                        "(`circulation consent withdraw`), under the subscriber's own pseudonym "
                        "of the person; the payload's `reason` says why. Its schema is "
                        f"registered under the subject {contract.erasure_subject}, not under "
                        f"the deliveries' subject: read `ce_type` first."),
        "contentType": AVRO_CONTENT_TYPE,
        "headers": _headers(headers),
        "payload": _avro(catalog.bus_record(ERASURE_TYPE).latest.raw),
        "bindings": _message_binding(subject, f"subject {contract.erasure_subject}"),
    }
