"""Implicit user turns ("I'm off to bed", "the usual", "make it cosy").

The wording names no value, so the right reply can only be given by knowing the persona's
latent preferences; these replies are marked ``persona_dependent=True``.
"""

from __future__ import annotations

from shpers_core.data.generate.personas import Profile, clock
from shpers_core.data.generate.replies import Action, Fact, deg, pct, render_actions, render_fact
from shpers_core.data.generate.turns import ROLES, Turn

WHEN = {"morning": "in the morning", "day": "during the day", "evening": "in the evening", "night": "at night"}


def _scene(p: Profile, role: str, tod: str) -> Action:
    b, color = p.scenes[(role, tod)]
    return Action("set", f"{p.rooms[role]} lights", (pct(b), color))


def _thermostat(p: Profile, temp: float) -> Action:
    return Action("set", p.thermostat, (deg(temp),))


def _say(p, rng, options):
    text = rng.choice(options)
    return text.format(living=p.rooms["living"], bedroom=p.rooms["bedroom"], extra=p.rooms["extra"])


def _do(p, rng, options, actions, lead=""):
    return Turn(_say(p, rng, options), render_actions(actions, p.style, rng, lead=lead), True)


def _tell(p, rng, options, full, terse):
    return Turn(_say(p, rng, options), render_fact(Fact(full, terse), p.style, rng), True)


# --- device control -------------------------------------------------------------------------


def cosy(p, rng, ctx):
    ctx.area_role = "living"
    return _do(p, rng, ("Make it cosy", "Cosy mode please", "Let's get cosy", "Make the {living} cosy",
                        "Make it nice and cosy in here"),
               [_scene(p, "living", "evening"), _thermostat(p, p.temps["evening"])])


def movie(p, rng, ctx):
    ctx.area_role = "living"
    b, color = p.movie
    return _do(p, rng, ("Movie time", "Time for a film", "Set up movie night", "Let's watch something",
                        "Get the {living} ready for a movie"),
               [Action("set", f"{p.rooms['living']} lights", (pct(b), color)), Action("on", p.tv)])


def bedtime(p, rng, ctx):
    ctx.area_role = "bedroom"
    return _do(p, rng, ("I'm off to bed", "Goodnight", "Heading to bed now", "Bedtime", "Night night"),
               [_scene(p, "bedroom", "night"), Action("off", f"{p.rooms['living']} lights"),
                _thermostat(p, p.temps["night"])], lead="Good night!")


def morning(p, rng, ctx):
    ctx.area_role = "kitchen"
    return _do(p, rng, ("Good morning", "I'm up", "Morning!", "Rise and shine", "Start my morning"),
               [_scene(p, "bedroom", "morning"), _scene(p, "kitchen", "morning"),
                _thermostat(p, p.temps["morning"]), Action("play", p.speaker, (p.podcast,))], lead="Good morning!")


def leaving(p, rng, ctx):
    return _do(p, rng, ("I'm heading out", "I'm off, see you later", "Leaving now", "Bye, I'm going out",
                        "I'm leaving the house"),
               [Action("off", "all lights"), _thermostat(p, p.away_temp)], lead="See you later!")


def usual_music(p, rng, ctx):
    return _do(p, rng, ("The usual", "The usual please", "Put on my usual", "Play my usual",
                        "Music, the usual"),
               [Action("play", p.speaker, (p.music,)), Action("set", f"{p.speaker} volume", (pct(p.volume),))])


def chilly(p, rng, ctx):
    return _do(p, rng, ("I'm freezing", "It's a bit chilly in here", "Brr, it's cold", "Warm it up a bit"),
               [_thermostat(p, p.temps["day"])])


def room_scene(p, rng, ctx):
    role = rng.choice(ROLES)
    tod = rng.choice(tuple(WHEN))
    ctx.area_role = role
    room = p.rooms[role]
    user = rng.choice((f"Set the {room} lights the way I like them {WHEN[tod]}",
                       f"{room.capitalize()} lights, my usual {tod} setting",
                       f"Give me my {tod} lighting in the {room}"))
    return Turn(user, render_actions([_scene(p, role, tod)], p.style, rng), True)


def work_mode(p, rng, ctx):
    ctx.area_role = "extra"
    return _do(p, rng, ("Time to focus", "Work mode", "I'm starting work", "Focus mode in the {extra}"),
               [_scene(p, "extra", "day"), _thermostat(p, p.temps["day"])])


# --- scheduling -----------------------------------------------------------------------------


def wake_alarm(p, rng, ctx):
    b, color = p.scenes[("bedroom", "morning")]
    room, t = p.rooms["bedroom"], clock(p.wake)
    return _tell(p, rng, ("Wake me at the usual time", "Set my usual alarm", "Same wake-up as always tomorrow",
                          "Set up my wake-up for tomorrow"),
                 f"Your wake-up is set for {t}: the {room} lights will come on at {b}% {color}.",
                 f"Wake-up {t}: {room} lights {b}%, {color}.")


def bedtime_reminder(p, rng, ctx):
    t = clock(p.bed)
    return _tell(p, rng, ("Remind me when it's bedtime", "Nudge me at bedtime", "Tell me when it's time for bed"),
                 f"I will remind you at {t}.", f"Reminder: {t}.")


def warm_welcome(p, rng, ctx):
    t, temp = clock(p.home), deg(p.temps["evening"])
    return _tell(p, rng, ("Warm the house up before I get home", "Have it warm when I'm back",
                          "Heat the place up for when I'm home"),
                 f"The {p.thermostat} will have the house at {temp} by {t}.", f"{p.thermostat.capitalize()}: {temp} by {t}.")


def lights_out_at_bedtime(p, rng, ctx):
    t, temp = clock(p.bed), deg(p.temps["night"])
    return _tell(p, rng, ("Turn everything off at my usual bedtime", "Shut the house down at bedtime tonight"),
                 f"At {t} I will switch off all lights and set the {p.thermostat} to {temp}.",
                 f"{t}: all lights off, {p.thermostat} {temp}.")


# --- information ----------------------------------------------------------------------------


def when_alarm(p, rng, ctx):
    t = clock(p.wake)
    return _tell(p, rng, ("When's my alarm?", "What time am I up tomorrow?", "When do I get woken up?"),
                 f"Your wake-up is set for {t}.", f"Wake-up: {t}.")


def when_bedtime(p, rng, ctx):
    t = clock(p.bed)
    return _tell(p, rng, ("What's my bedtime again?", "When do I usually go to bed?"),
                 f"Your bedtime routine starts at {t}.", f"Bedtime: {t}.")


def night_temperature(p, rng, ctx):
    temp = deg(p.temps["night"])
    return _tell(p, rng, ("How warm do I keep it at night?", "What's the heating at overnight?"),
                 f"You keep the {p.thermostat} at {temp} at night.", f"Night: {p.thermostat} {temp}.")


def which_music(p, rng, ctx):
    return _tell(p, rng, ("What's that music I always play?", "What's my usual playlist?"),
                 f"Your usual is {p.music} on the {p.speaker}.", f"Usual: {p.music}, {p.speaker}.")


def which_scene(p, rng, ctx):
    role = rng.choice(ROLES)
    tod = rng.choice(tuple(WHEN))
    room = p.rooms[role]
    b, color = p.scenes[(role, tod)]
    user = rng.choice((f"How do I like the {room} lights {WHEN[tod]}?", f"What's my {tod} setting for the {room}?"))
    return Turn(user, render_fact(Fact(f"You like the {room} lights at {b}% {color} {WHEN[tod]}.",
                                       f"{room.capitalize()} {tod}: {b}%, {color}."), p.style, rng), True)


def which_show(p, rng, ctx):
    return _tell(p, rng, ("What do I usually watch?", "What's my usual show?"),
                 f"You usually put on {p.show} on the {p.tv}.", f"Usual: {p.show}, {p.tv}.")


IMPLICIT = {
    "device_control": (cosy, movie, bedtime, morning, leaving, usual_music, chilly, room_scene, work_mode),
    "scheduling": (wake_alarm, bedtime_reminder, warm_welcome, lights_out_at_bedtime),
    "information": (when_alarm, when_bedtime, night_temperature, which_music, which_scene, which_show),
}
