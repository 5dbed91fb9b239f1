"""The behaviour families personas are drawn from.

Each archetype fixes ranges, palettes and pools; every persona then draws its own values inside
them, so behaviour clusters by archetype while individuals still differ.
"""

from __future__ import annotations

from dataclasses import dataclass

# HA's ``color`` list and ``color_temperature_names`` list, the two ways a light colour is said.
HA_COLORS = ("white", "red", "orange", "yellow", "green", "blue", "purple", "pink", "turquoise")
HA_WHITES = ("candle light", "warm white", "cool white", "daylight")
TIMES_OF_DAY = ("morning", "day", "evening", "night")
STYLES = ("terse", "chatty", "formal", "playful")


@dataclass(frozen=True)
class Archetype:
    name: str
    wake: tuple[int, int]  # minutes after midnight
    bed: tuple[int, int]  # may run past midnight (> 1440)
    home: tuple[int, int]  # when they are usually back home
    brightness: dict[str, tuple[int, int]]  # by time of day
    colors: dict[str, tuple[str, ...]]  # by time of day
    temperature: tuple[float, float]  # day thermostat range, Celsius
    night_drop: tuple[float, float]  # how much cooler at night
    music: tuple[str, ...]
    podcasts: tuple[str, ...]
    shows: tuple[str, ...]
    styles: tuple[float, float, float, float]  # weights over STYLES
    extra_rooms: tuple[str, ...]
    occupations: tuple[str, ...]
    traits: tuple[str, ...]  # behaviour-revealing phrases for the description
    domains: tuple[float, float, float]  # device, scheduling, information
    timers: tuple[str, ...]
    list_items: tuple[str, ...]


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        name="early_riser_athlete",
        wake=(300, 375), bed=(1290, 1350), home=(1050, 1110),
        brightness={"morning": (80, 100), "day": (70, 90), "evening": (40, 60), "night": (5, 15)},
        colors={"morning": ("daylight", "cool white"), "day": ("cool white", "daylight"),
                "evening": ("warm white", "orange"), "night": ("red", "candle light")},
        temperature=(18.0, 20.0), night_drop=(1.5, 3.0),
        music=("running mix", "upbeat pop", "workout playlist", "high energy dance", "power hour"),
        podcasts=("The Morning Run", "Fit Talk", "Sports Daily"),
        shows=("a cycling race", "the match highlights", "a climbing documentary"),
        styles=(0.6, 0.05, 0.05, 0.3),
        extra_rooms=("home gym", "workout room", "garage gym"),
        occupations=("fitness instructor", "physiotherapist", "PE teacher", "personal trainer", "nurse"),
        traits=("is out running before sunrise", "trains for marathons", "likes bright, crisp mornings",
                "turns in early to get a full night's sleep"),
        domains=(0.45, 0.35, 0.20),
        timers=("workout", "stretching", "eggs", "recovery", "plank"),
        list_items=("swim session", "track intervals", "buy protein oats", "physio appointment"),
    ),
    Archetype(
        name="night_owl_gamer",
        wake=(570, 660), bed=(1500, 1590), home=(1140, 1260),
        brightness={"morning": (30, 50), "day": (40, 60), "evening": (50, 70), "night": (20, 35)},
        colors={"morning": ("blue", "cool white"), "day": ("turquoise", "blue"),
                "evening": ("purple", "blue", "pink"), "night": ("purple", "red", "blue")},
        temperature=(21.0, 23.0), night_drop=(0.0, 1.0),
        music=("synthwave", "lo-fi beats", "video game soundtracks", "drum and bass", "chiptune"),
        podcasts=("Patch Notes", "The Speedrun Show", "Tech Weekly"),
        shows=("an anime episode", "the esports final", "a sci-fi series"),
        styles=(0.1, 0.15, 0.05, 0.7),
        extra_rooms=("game room", "den", "streaming room"),
        occupations=("software developer", "streamer", "graphic designer", "night shift technician", "student"),
        traits=("rarely sleeps before one in the morning", "streams games late into the night",
                "loves coloured mood lighting", "sleeps in on most days"),
        domains=(0.55, 0.15, 0.30),
        timers=("pizza", "raid", "break", "noodles", "stream"),
        list_items=("tournament signup", "order a new headset", "stream schedule", "pay the internet bill"),
    ),
    Archetype(
        name="family_parent",
        wake=(390, 435), bed=(1320, 1380), home=(1020, 1080),
        brightness={"morning": (70, 90), "day": (60, 80), "evening": (50, 70), "night": (10, 20)},
        colors={"morning": ("cool white", "warm white"), "day": ("warm white", "white"),
                "evening": ("warm white", "yellow"), "night": ("orange", "candle light")},
        temperature=(20.0, 22.0), night_drop=(1.0, 2.0),
        music=("kids songs", "family singalong", "pop hits", "bedtime lullabies", "radio hits"),
        podcasts=("Story Time", "Parenting Hour", "The News Briefing"),
        shows=("a family movie", "a cartoon", "the baking show"),
        styles=(0.05, 0.7, 0.15, 0.1),
        extra_rooms=("kids room", "playroom", "nursery"),
        occupations=("accountant", "primary school teacher", "pharmacist", "project manager", "shop owner"),
        traits=("juggles school runs and work", "puts the kids to bed at eight",
                "keeps a busy family calendar", "wants a calm house in the evening"),
        domains=(0.35, 0.45, 0.20),
        timers=("homework", "bath", "pasta", "screen time", "nap"),
        list_items=("parents evening", "dentist appointment", "school trip money", "swimming lessons"),
    ),
    Archetype(
        name="retiree",
        wake=(420, 480), bed=(1260, 1320), home=(960, 1020),
        brightness={"morning": (70, 90), "day": (80, 100), "evening": (70, 90), "night": (20, 30)},
        colors={"morning": ("warm white", "white"), "day": ("white", "warm white"),
                "evening": ("warm white", "candle light"), "night": ("candle light", "warm white")},
        temperature=(22.0, 24.0), night_drop=(0.5, 1.5),
        music=("classical", "jazz standards", "big band", "radio four", "opera favourites"),
        podcasts=("The History Hour", "Gardeners' Question Time", "The Daily News"),
        shows=("the evening news", "a quiz show", "a nature documentary"),
        styles=(0.05, 0.2, 0.7, 0.05),
        extra_rooms=("conservatory", "reading room", "sunroom"),
        occupations=("retired engineer", "retired teacher", "former nurse", "retired postman", "retired librarian"),
        traits=("likes the house warm", "reads a lot and needs bright light",
                "follows the news every evening", "goes to bed early"),
        domains=(0.40, 0.25, 0.35),
        timers=("tea", "bread", "oven", "medication", "roast"),
        list_items=("book club", "doctor appointment", "call the grandchildren", "collect the prescription"),
    ),
    Archetype(
        name="remote_worker",
        wake=(420, 480), bed=(1380, 1440), home=(1020, 1080),
        brightness={"morning": (60, 80), "day": (90, 100), "evening": (40, 60), "night": (10, 25)},
        colors={"morning": ("cool white", "white"), "day": ("daylight", "cool white"),
                "evening": ("warm white", "candle light"), "night": ("candle light", "orange")},
        temperature=(20.0, 21.5), night_drop=(1.0, 2.5),
        music=("focus music", "deep work playlist", "ambient jazz", "piano study", "coffee shop sounds"),
        podcasts=("Remote Ready", "The Productivity Show", "Market Update"),
        shows=("a documentary", "a crime drama", "the late night show"),
        styles=(0.3, 0.05, 0.6, 0.05),
        extra_rooms=("office", "study", "home office"),
        occupations=("data analyst", "translator", "UX researcher", "copywriter", "support engineer"),
        traits=("works from home most days", "needs bright cool light at the desk",
                "keeps meetings and focus blocks strictly", "switches off firmly after work"),
        domains=(0.40, 0.35, 0.25),
        timers=("focus", "meeting", "coffee", "break", "standup"),
        list_items=("team standup", "send the invoice", "quarterly review", "book a coworking desk"),
    ),
    Archetype(
        name="eco_saver",
        wake=(375, 435), bed=(1320, 1380), home=(1020, 1080),
        brightness={"morning": (40, 60), "day": (30, 50), "evening": (30, 45), "night": (5, 10)},
        colors={"morning": ("warm white", "white"), "day": ("white", "warm white"),
                "evening": ("warm white", "candle light"), "night": ("candle light", "orange")},
        temperature=(17.0, 19.0), night_drop=(2.0, 3.0),
        music=("folk", "nature sounds", "acoustic covers", "world music", "birdsong"),
        podcasts=("Green Living", "The Climate Hour", "Zero Waste Weekly"),
        shows=("a wildlife documentary", "a gardening programme", "a travel show"),
        styles=(0.6, 0.15, 0.2, 0.05),
        extra_rooms=("greenhouse", "utility room", "garden room"),
        occupations=("environmental scientist", "bike mechanic", "gardener", "energy consultant", "farmer"),
        traits=("watches the energy bill closely", "keeps the heating low",
                "turns everything off when leaving", "prefers dim, warm light"),
        domains=(0.50, 0.25, 0.25),
        timers=("laundry", "compost", "soup", "watering", "bread"),
        list_items=("repair cafe", "take the glass to recycling", "seed swap", "check the solar readings"),
    ),
)

ROOM_NAMES = {
    "bedroom": ("bedroom", "main bedroom", "master bedroom", "loft"),
    "living": ("living room", "lounge", "family room", "front room", "sitting room"),
    "kitchen": ("kitchen", "kitchenette", "dining room"),
}
LIGHT_NAMES = {
    "bedroom": ("bedside lamp", "bedroom light strip", "night light", "ceiling light"),
    "living": ("floor lamp", "big lamp", "TV backlight", "corner lamp"),
    "kitchen": ("pendant lights", "counter lights", "kitchen spots"),
    "extra": ("desk lamp", "reading lamp", "light panel", "LED strip"),
}
SPEAKER_NAMES = ("kitchen speaker", "Sonos", "Echo", "smart speaker", "radio")
TV_NAMES = ("TV", "telly", "big screen", "projector")
THERMOSTAT_NAMES = ("thermostat", "Nest", "heating", "radiators")
