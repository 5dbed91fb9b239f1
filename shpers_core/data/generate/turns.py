"""Explicit user turns: HA template wording with the persona's own room and device names.

Every reply here follows from what the user said (plus simulated home state), so these turns
are marked ``persona_dependent=False``; only the reply style varies with the persona.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from shpers_core.data.generate.archetypes import ARCHETYPES, HA_COLORS, HA_WHITES
from shpers_core.data.generate.personas import Profile
from shpers_core.data.generate.replies import Action, Fact, deg, pct, render_actions, render_fact
from shpers_core.data.generate.templates import phrase

ROLES = ("bedroom", "extra", "kitchen", "living")
TIMER_NAMES = ("pasta", "laundry", "tea", "oven", "bread", "workout", "homework", "nap", "eggs", "pizza")
LIST_NAMES = ("schedule", "to-do", "calendar", "chores")
LIST_ITEMS = ("dentist appointment", "call the plumber", "yoga class", "parents evening", "book the car service",
              "pay the electricity bill", "water the plants", "pick up the parcel", "team lunch", "swim session")
WEATHER = ("sunny", "cloudy", "raining", "overcast", "windy", "foggy", "clear")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
ANY_MUSIC = tuple(m for a in ARCHETYPES for m in a.music)


@dataclass
class Context:
    """What earlier turns of the dialogue established (for follow-ups that leave it implicit)."""

    area_role: str | None = None
    timer: tuple[str, int] | None = None
    used: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Turn:
    user: str
    reply: str
    persona_dependent: bool


def _lights(p: Profile, role: str) -> str:
    return f"{p.rooms[role]} lights"


def _pick_room(p: Profile, rng: random.Random, ctx: Context) -> str:
    ctx.area_role = rng.choice(ROLES)
    return ctx.area_role


def _reply(p: Profile, rng: random.Random, actions: list[Action]) -> str:
    return render_actions(actions, p.style, rng)


def _fact(p: Profile, rng: random.Random, full: str, terse: str) -> str:
    return render_fact(Fact(full, terse), p.style, rng)


# --- device control -------------------------------------------------------------------------


def light_brightness(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    b = 5 * rng.randint(2, 20)
    user = phrase(rng, "HassLightSet", "area_brightness", {"area": p.rooms[role], "brightness": str(b)})
    return Turn(user, _reply(p, rng, [Action("set", _lights(p, role), (pct(b),))]), False)


def light_color(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    # People mostly ask for colours from their own palette, sometimes for anything.
    palette = [c for tod in ("evening", "night") for c in p.archetype.colors[tod] if c in HA_COLORS]
    if rng.random() < 0.5:
        color = rng.choice(palette if palette and rng.random() < 0.6 else HA_COLORS)
        user = phrase(rng, "HassLightSet", "area_color", {"area": p.rooms[role], "color": color})
    else:
        color = rng.choice(HA_WHITES)
        user = phrase(rng, "HassLightSet", "area_temperature",
                      {"area": p.rooms[role], "color_temperature_names": color})
    return Turn(user, _reply(p, rng, [Action("set", _lights(p, role), (color,))]), False)


def lights_on_off(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    intent, kind = rng.choice((("HassTurnOn", "on"), ("HassTurnOff", "off")))
    user = phrase(rng, intent, "area_domain", {"area": p.rooms[role]}, domain="light")
    return Turn(user, _reply(p, rng, [Action(kind, _lights(p, role))]), False)


def named_light(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    name = p.lights[role]
    if rng.random() < 0.5:
        b = 5 * rng.randint(1, 20)
        user = phrase(rng, "HassLightSet", "name_brightness", {"name": name, "brightness": str(b)}, domain="light")
        return Turn(user, _reply(p, rng, [Action("set", name, (pct(b),))]), False)
    intent, kind = rng.choice((("HassTurnOn", "on"), ("HassTurnOff", "off")))
    if rng.random() < 0.5:
        user = phrase(rng, intent, "name_area", {"name": name, "area": p.rooms[role]}, domain="light")
        target = f"{name} in the {p.rooms[role]}"
    else:
        user = phrase(rng, intent, "name_only", {"name": name}, domain="light")
        target = name
    return Turn(user, _reply(p, rng, [Action(kind, target)]), False)


def room_temperature(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    t = rng.randint(32, 50) / 2
    user = phrase(rng, "HassClimateSetTemperature", "area_temperature",
                  {"area": p.rooms[role], "temperature": f"{t:g}"})
    return Turn(user, _reply(p, rng, [Action("set", f"{p.rooms[role]} temperature", (deg(t),))]), False)


def play_music(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    query = rng.choice(p.archetype.music if rng.random() < 0.6 else ANY_MUSIC)
    user = phrase(rng, "HassMediaSearchAndPlay", "area_only", {"search_query": query, "area": p.rooms[role]})
    return Turn(user, _reply(p, rng, [Action("play", f"{p.rooms[role]} speaker", (query,))]), False)


def speaker_volume(p, rng, ctx):
    v = 5 * rng.randint(2, 16)
    user = phrase(rng, "HassSetVolume", "name_only", {"name": p.speaker, "volume": str(v)}, domain="media_player")
    return Turn(user, _reply(p, rng, [Action("set", f"{p.speaker} volume", (pct(v),))]), False)


def blinds(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    pos = 10 * rng.randint(0, 10)
    user = phrase(rng, "HassSetPosition", "area_device_class",
                  {"area": p.rooms[role], "cover_classes": "blinds", "position": str(pos)})
    return Turn(user, _reply(p, rng, [Action("set", f"{p.rooms[role]} blinds", (pct(pos),))]), False)


def tv_power(p, rng, ctx):
    intent, kind = rng.choice((("HassTurnOn", "on"), ("HassTurnOff", "off")))
    user = phrase(rng, intent, "name_only", {"name": p.tv}, domain="media_player")
    return Turn(user, _reply(p, rng, [Action(kind, p.tv)]), False)


def followup_brightness(p, rng, ctx):
    if ctx.area_role is None:
        return None
    b = 5 * rng.randint(1, 20)
    user = phrase(rng, "HassLightSet", "brightness_only", {"brightness": str(b)})
    return Turn(user, _reply(p, rng, [Action("set", _lights(p, ctx.area_role), (pct(b),))]), False)


def followup_color(p, rng, ctx):
    if ctx.area_role is None:
        return None
    if rng.random() < 0.5:
        color = rng.choice(HA_COLORS)
        user = phrase(rng, "HassLightSet", "color_only", {"color": color})
    else:
        color = rng.choice(HA_WHITES)
        user = phrase(rng, "HassLightSet", "temperature_only", {"color_temperature_names": color})
    return Turn(user, _reply(p, rng, [Action("set", _lights(p, ctx.area_role), (color,))]), False)


def followup_temperature(p, rng, ctx):
    if ctx.area_role is None:
        return None
    t = rng.randint(32, 50) / 2
    user = phrase(rng, "HassClimateSetTemperature", "temperature_only", {"temperature": f"{t:g}"})
    target = f"{p.rooms[ctx.area_role]} temperature"
    return Turn(user, _reply(p, rng, [Action("set", target, (deg(t),))]), False)


# --- scheduling -----------------------------------------------------------------------------


def timer(p, rng, ctx):
    minutes = rng.choice((3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 45))
    if rng.random() < 0.5:
        name = rng.choice(p.archetype.timers if rng.random() < 0.7 else TIMER_NAMES)
        user = phrase(rng, "HassStartTimer", "name_minutes", {"timer_minutes": str(minutes), "timer_name": name})
        full, terse = f"Your {name} timer is set for {minutes} minutes.", f"{name.capitalize()} timer: {minutes} min."
    else:
        name = ""
        user = phrase(rng, "HassStartTimer", "minutes_only", {"timer_minutes": str(minutes)})
        full, terse = f"Timer set for {minutes} minutes.", f"Timer: {minutes} min."
    ctx.timer = (name, minutes)
    return Turn(user, _fact(p, rng, full, terse), False)


def long_timer(p, rng, ctx):
    hours, minutes = rng.randint(1, 3), rng.choice((10, 15, 20, 30, 45))
    user = phrase(rng, "HassStartTimer", "hours_minutes", {"timer_hours": str(hours), "timer_minutes": str(minutes)})
    ctx.timer = ("", hours * 60 + minutes)
    unit = "hour" if hours == 1 else "hours"
    return Turn(user, _fact(p, rng, f"Timer set for {hours} {unit} and {minutes} minutes.",
                            f"Timer: {hours} h {minutes} min."), False)


def delayed_command(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    minutes = rng.choice((10, 15, 20, 30, 45, 60))
    command = phrase(rng, "HassTurnOff", "area_domain", {"area": p.rooms[role]}, domain="light").lower()
    user = phrase(rng, "HassStartTimer", "command_minutes", {"timer_command": command, "timer_minutes": str(minutes)})
    lights = _lights(p, role)
    return Turn(user, _fact(p, rng, f"In {minutes} minutes I will switch off the {lights}.",
                            f"{lights.capitalize()} off in {minutes} min."), False)


def list_item(p, rng, ctx):
    item = rng.choice(p.archetype.list_items if rng.random() < 0.7 else LIST_ITEMS)
    name = rng.choice(LIST_NAMES)
    user = phrase(rng, "HassListAddItem", "name_item", {"todo_list_item": item, "name": name}, domain="todo")
    return Turn(user, _fact(p, rng, f"Added {item} to your {name} list.", f"{name.capitalize()}: + {item}."), False)


def timer_status(p, rng, ctx):
    if ctx.timer is None:
        return None
    name, minutes = ctx.timer
    left = rng.randint(1, max(1, minutes - 1))
    if name:
        user = phrase(rng, "HassTimerStatus", "name_only", {"timer_name": name})
        label = f"{name} timer"
    else:
        user = phrase(rng, "HassTimerStatus", "default", {})
        label = "timer"
    return Turn(user, _fact(p, rng, f"There are {left} minutes left on the {label}.",
                            f"{label.capitalize()}: {left} min left."), False)


def timer_cancel(p, rng, ctx):
    if ctx.timer is None:
        return None
    name, _ = ctx.timer
    ctx.timer = None
    if name:
        user = phrase(rng, "HassCancelTimer", "name_only", {"timer_name": name})
        label = f"{name} timer"
    else:
        user = phrase(rng, "HassCancelTimer", "default", {})
        label = "timer"
    return Turn(user, _fact(p, rng, f"I have cancelled the {label}.", f"{label.capitalize()} cancelled."), False)


# --- information ----------------------------------------------------------------------------


def weather(p, rng, ctx):
    user = phrase(rng, "HassGetWeather", "default", {})
    t, sky = rng.randint(-3, 30), rng.choice(WEATHER)
    return Turn(user, _fact(p, rng, f"It is {t}°C and {sky} outside.", f"{t}°C, {sky}."), False)


def room_temperature_query(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    t = rng.randint(32, 50) / 2
    user = phrase(rng, "HassClimateGetTemperature", "area_only", {"area": p.rooms[role]})
    room = p.rooms[role]
    return Turn(user, _fact(p, rng, f"It is {t:g}°C in the {room}.", f"{room.capitalize()}: {t:g}°C."), False)


def lights_state(p, rng, ctx):
    role = _pick_room(p, rng, ctx)
    user = phrase(rng, "HassGetState", "domain_state_area", {"area": p.rooms[role], "on_off_states": "on"},
                  domain="light", response="any")
    lights = _lights(p, role)
    if rng.random() < 0.5:
        b = 5 * rng.randint(2, 20)
        return Turn(user, _fact(p, rng, f"Yes, the {lights} are on at {b}%.", f"Yes: {lights} on, {b}%."), False)
    return Turn(user, _fact(p, rng, f"No, the {lights} are off.", f"No: {lights} off."), False)


def device_state(p, rng, ctx):
    role = rng.choice(ROLES)
    name = p.lights[role]
    user = phrase(rng, "HassGetState", "name_only", {"name": name}, domain="light")
    if rng.random() < 0.5:
        b = 5 * rng.randint(2, 20)
        return Turn(user, _fact(p, rng, f"The {name} is on at {b}%.", f"{name.capitalize()}: on, {b}%."), False)
    return Turn(user, _fact(p, rng, f"The {name} is off.", f"{name.capitalize()}: off."), False)


def current_time(p, rng, ctx):
    user = phrase(rng, "HassGetCurrentTime", "default", {})
    t = f"{rng.randint(0, 23)}:{rng.randint(0, 59):02d}"
    return Turn(user, _fact(p, rng, f"It is {t}.", f"{t}."), False)


def current_date(p, rng, ctx):
    user = phrase(rng, "HassGetCurrentDate", "default", {})
    d = f"{rng.choice(WEEKDAYS)}, {rng.randint(1, 28)} {rng.choice(MONTHS)}"
    return Turn(user, _fact(p, rng, f"Today is {d}.", f"{d}."), False)


def followup_temperature_query(p, rng, ctx):
    if ctx.area_role is None:
        return None
    t = rng.randint(32, 50) / 2
    user = phrase(rng, "HassClimateGetTemperature", "default", {})
    room = p.rooms[ctx.area_role]
    return Turn(user, _fact(p, rng, f"It is {t:g}°C in the {room}.", f"{room.capitalize()}: {t:g}°C."), False)


# (generator, weight) per domain: openers start a topic, follow-ups lean on the context.
OPENERS = {
    "device_control": ((light_brightness, 3), (light_color, 2), (lights_on_off, 3), (named_light, 2),
                       (room_temperature, 2), (play_music, 2), (speaker_volume, 1), (blinds, 1), (tv_power, 1)),
    "scheduling": ((timer, 3), (long_timer, 1), (delayed_command, 2), (list_item, 2)),
    "information": ((weather, 2), (room_temperature_query, 2), (lights_state, 2), (device_state, 1),
                    (current_time, 1), (current_date, 1)),
}
FOLLOWUPS = {
    "device_control": ((followup_brightness, 2), (followup_color, 2), (followup_temperature, 1)),
    "scheduling": ((timer_status, 2), (timer_cancel, 1)),
    "information": ((followup_temperature_query, 1),),
}
