"""What the persona knows of the home: the entities Home Assistant exposes to Assist, as one snapshot."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field


def normalize_name(text: str) -> str:
    """How names are compared: lower case, no accents or punctuation, single spaces (like HA does)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().replace("’", "'")
    return " ".join(re.sub(r"[^\w' ]+", " ", text).split())


@dataclass(frozen=True)
class HomeEntity:
    """One exposed entity with the state the persona may speak about."""

    entity_id: str
    name: str
    state: str
    area: str | None = None
    aliases: tuple[str, ...] = ()
    device_class: str | None = None
    unit: str | None = None
    attributes: dict = field(default_factory=dict, compare=False, hash=False)
    """The few attributes lines and checks use: brightness, current_position, temperature,
    current_temperature, hvac_action."""

    @property
    def domain(self) -> str:
        return self.entity_id.split(".", 1)[0]

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class HomeSnapshot:
    """The exposed entities and the areas, as one immutable view; a new one replaces it on a change."""

    entities: tuple[HomeEntity, ...] = ()
    areas: tuple[str, ...] = ()
    version: int = 0
    """Grows with every registry change (not with state changes): recognisers rebuild on a new one."""

    @functools.cached_property
    def _names(self) -> dict[str, HomeEntity]:
        """Normalised name or alias -> entity (the first one that has it)."""
        index: dict[str, HomeEntity] = {}
        for entity in self.entities:
            for name in entity.names:
                index.setdefault(normalize_name(name), entity)
        return index

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {entity.entity_id: position for position, entity in enumerate(self.entities)}

    def by_name(self, spoken: str) -> HomeEntity | None:
        return self._names.get(normalize_name(spoken))

    def area(self, spoken: str) -> str | None:
        wanted = normalize_name(spoken)
        return next((area for area in self.areas if normalize_name(area) == wanted), None)

    def select(
        self, area: str | None = None, domain: str | None = None, device_class: str | None = None
    ) -> tuple[HomeEntity, ...]:
        """The entities in `area` (any area when None) of `domain` and `device_class` (any when None)."""
        wanted_area = normalize_name(area) if area else None
        return tuple(
            entity
            for entity in self.entities
            if (
                wanted_area is None
                or (entity.area is not None and normalize_name(entity.area) == wanted_area)
            )
            and (domain is None or entity.domain == domain)
            and (device_class is None or entity.device_class == device_class)
        )

    def with_state(self, entity_id: str, state: str, attributes: dict) -> HomeSnapshot:
        """This snapshot with one entity's state replaced; itself for an entity it does not hold (HA
        sends state_changed for every entity, most of them not exposed)."""
        position = self._positions.get(entity_id)
        if position is None:
            return self
        entity = _restate(self.entities[position], state, attributes)
        entities = (*self.entities[:position], entity, *self.entities[position + 1 :])
        return HomeSnapshot(entities, self.areas, self.version)


KEPT_ATTRIBUTES = ("brightness", "current_position", "temperature", "current_temperature", "hvac_action")


def kept_attributes(attributes: dict) -> dict:
    return {key: attributes[key] for key in KEPT_ATTRIBUTES if attributes.get(key) is not None}


def _restate(entity: HomeEntity, state: str, attributes: dict) -> HomeEntity:
    return HomeEntity(
        entity.entity_id,
        entity.name,
        state,
        entity.area,
        entity.aliases,
        entity.device_class,
        attributes.get("unit_of_measurement", entity.unit),
        kept_attributes(attributes),
    )
