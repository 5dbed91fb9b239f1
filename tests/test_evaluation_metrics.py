import pytest

from shpers_core.evaluation import (
    METRIC_LABELS,
    METRIC_NAMES,
    Device,
    Parameter,
    parse_reply,
    score_reply,
)


def numbers(text):
    return list(parse_reply(text).numbers)


def params(text):
    return list(parse_reply(text).parameters)


def devices(text):
    return list(parse_reply(text).devices)


# --- numbers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Set to 30%", ["30"]),
    ("30 percent", ["30"]),
    ("thirty per cent", ["30"]),
    ("twenty", ["20"]),
    ("twenty-five percent", ["25"]),
    ("twenty five", ["25"]),
    ("a hundred", ["100"]),
    ("one hundred and twenty", ["120"]),
    ("21.5 degrees", ["21.5"]),
    ("21.50", ["21.5"]),
    ("twenty one point five", ["21.5"]),
    ("1,000 lumens", ["1000"]),
    ("20-22°C", ["20", "22"]),
    ("20 to 22 degrees", ["20", "22"]),
    ("between 20 and 22", ["20", "22"]),
    ("It is -5 degrees outside", ["-5"]),
    ("21°C", ["21"]),
    ("70 degrees", ["70"]),
    ("21C", ["21"]),
    ("Done.", []),
    ("", []),
])
def test_numbers(text, expected):
    assert numbers(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("7:30 pm", "19:30"),
    ("7:30 PM", "19:30"),
    ("7:30 p.m.", "19:30"),
    ("19:30", "19:30"),
    ("7 pm", "19:00"),
    ("7pm", "19:00"),
    ("7:30", "07:30"),
    ("7:30 am", "07:30"),
    ("12 am", "00:00"),
    ("12:15 pm", "12:15"),
    ("half past seven in the evening", "19:30"),
    ("half past seven", "07:30"),
    ("quarter to eight pm", "19:45"),
    ("quarter past 6 am", "06:15"),
    ("seven o'clock", "07:00"),
    ("seven thirty pm", "19:30"),
    ("10 at night", "22:00"),
    ("7 in the morning", "07:00"),
    ("noon", "12:00"),
    ("midnight", "00:00"),
])
def test_times_are_24_hour(text, expected):
    assert numbers(text) == [expected]
    assert params(text) == [Parameter("time", expected)]


def test_7_30_pm_matches_19_30():
    assert score_reply("Alarm set for 7:30 pm.", "Alarm set for 19:30.")["numerical_precision"] == 1.0


@pytest.mark.parametrize("text", ["Playing mp3 files", "covid-19 update", "a 4k tv", "the 3d printer",
                                  "this one is better", "one moment please", "someone is at the door"])
def test_numbers_inside_words_and_pronoun_one_are_not_numbers(text):
    assert numbers(text) == []


def test_one_counts_before_a_unit_and_in_compounds():
    assert numbers("one degree warmer") == ["1"]
    assert numbers("twenty-one") == ["21"]
    assert numbers("five twenty") == ["5", "20"]  # not a single number


def test_ordinal_and_decade_suffixes_keep_the_number():
    assert numbers("the 2nd floor") == ["2"]
    assert numbers("80s music") == ["80"]


# --- parameters --------------------------------------------------------------------------------

def test_percent_kind_follows_the_nearest_setting_word():
    assert params("Bedroom lights to 30%.") == [Parameter("brightness", "30")]
    assert params("Volume at 40 percent.") == [Parameter("volume", "40")]
    assert params("Opening the blinds to 50%.") == [Parameter("state", "open"), Parameter("position", "50")]
    assert params("Humidity is 45%.") == [Parameter("humidity", "45")]
    assert params("That is 30% cheaper.") == [Parameter("percent", "30")]


def test_temperatures_keep_their_unit():
    assert params("Heating to 21°C") == [Parameter("temperature", "21°C")]
    assert params("72 degrees fahrenheit") == [Parameter("temperature", "72°F")]
    assert params("70 degrees") == [Parameter("temperature", "70°")]
    assert params("Set the thermostat to 21") == [Parameter("temperature", "21°")]
    assert params("20-22°C") == [Parameter("temperature", "20°C"), Parameter("temperature", "22°C")]


def test_unitless_temperature_matches_either_scale_once():
    s = score_reply("Thermostat set to 21 degrees.", "Thermostat set to 21°C.")
    assert s["parameter_f1"] == 1.0
    # One "21°" cannot stand for two references.
    s = score_reply("Set to 21 degrees.", "21°C now, 21°F later.")
    assert s["parameter_f1"] == pytest.approx(2 * 1 / 3)
    assert score_reply("21°F", "21°C")["parameter_f1"] == 0.0


def test_states():
    assert params("Turning on the lights") == [Parameter("state", "on")]
    assert params("Turn the kitchen lights off and the fan on.") == [Parameter("state", "off"),
                                                                     Parameter("state", "on")]
    assert params("The heating is on.") == [Parameter("state", "on")]
    assert params("Heater's on") == [Parameter("state", "on")]
    assert params("Lock the front door; the garage door is closed.") == [
        Parameter("state", "locked"), Parameter("state", "closed")]
    assert params("Unlocking the back door") == [Parameter("state", "unlocked")]
    assert params("The reminder is on Monday") == []
    assert params("It's close to 20 degrees") == [Parameter("temperature", "20°")]


def test_colours_media_modes_durations():
    assert params("Lights to warm white") == [Parameter("colour", "warm white")]
    assert params("Changing to light blue") == [Parameter("colour", "light blue")]
    assert devices("Changing to light blue") == []
    assert params('Playing "Clair de Lune" on the speaker') == [Parameter("state", "playing"),
                                                                 Parameter("title", "clair de lune")]
    assert params("Playing Bohemian Rhapsody by Queen.") == [
        Parameter("state", "playing"), Parameter("title", "bohemian rhapsody"), Parameter("artist", "queen")]
    assert params("Playing jazz") == [Parameter("state", "playing"), Parameter("genre", "jazz")]
    assert params("Some lo-fi beats") == [Parameter("genre", "lo fi")]
    assert params("White noise for an hour") == [Parameter("genre", "white noise")]
    assert params("Switching to eco mode") == [Parameter("mode", "eco")]
    assert params("Fan speed to high") == [Parameter("speed", "high")]
    assert params("Timer for 2 hours") == [Parameter("duration", "120 min")]
    assert params("Timer for ninety minutes") == [Parameter("duration", "90 min")]


# --- devices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("Turn on the bedroom lights", [Device("bedroom", "light")]),
    ("Turn on the bedroom light", [Device("bedroom", "light")]),
    ("the BEDROOM LAMP!", [Device("bedroom", "light")]),
    ("Dim the living room lamps.", [Device("living room", "light")]),
    ("the lights in the living room", [Device("living room", "light")]),
    ("the lounge lights", [Device("living room", "light")]),
    ("master bedroom ceiling fan", [Device("master bedroom", "fan")]),
    ("the kitchen's lights", [Device("kitchen", "light")]),
    ("Heater's on", [Device(None, "thermostat")]),
    ("heating and the thermostat", [Device(None, "thermostat")]),
    ("the garage door", [Device(None, "garage_door")]),
    ("garage lights", [Device("garage", "light")]),
    ("front door lock", [Device(None, "lock")]),
    ("Lock the front door", [Device(None, "door")]),
    ("the TV and the speakers", [Device(None, "tv"), Device(None, "speaker")]),
    ("the television", [Device(None, "tv")]),
    ("the curtains and shades", [Device(None, "blinds")]),
    ("the robot vacuum", [Device(None, "vacuum")]),
    ("the A/C", [Device(None, "air_conditioner")]),
    ("I'm a big fan of jazz", []),
    ("Good morning!", []),
])
def test_devices(text, expected):
    assert devices(text) == expected


def test_bare_mention_merges_into_the_placed_device():
    assert devices("Dimming the bedroom lights. The lights are now at 30%.") == [Device("bedroom", "light")]


# --- the three scores --------------------------------------------------------------------------

def test_device_precision():
    ref = "Turning on the bedroom lights and the kitchen fan."
    assert score_reply("Bedroom lights on.", ref)["device_precision"] == 1.0
    assert score_reply("Lights on.", ref)["device_precision"] == 1.0  # no area: type suffices
    assert score_reply("Living room lights on.", ref)["device_precision"] == 0.0
    assert score_reply("Bedroom lights and the tv on.", ref)["device_precision"] == 0.5


def test_device_precision_when_no_device_is_named():
    assert score_reply("Sure thing!", "You're welcome!")["device_precision"] == 1.0
    assert score_reply("Sure thing!", "Turning on the lights.")["device_precision"] == 0.0
    assert score_reply("Turning on the lights.", "Sure thing!")["device_precision"] == 0.0


def test_parameter_f1_is_over_multisets():
    ref = "Lights to 30% and warm white."
    assert score_reply("Setting 30% brightness, warm white.", ref)["parameter_f1"] == 1.0
    # pred {brightness 30, colour red}; ref {brightness 30, colour warm white}: 1 of 2 each side.
    assert score_reply("Lights to 30%, red.", ref)["parameter_f1"] == pytest.approx(0.5)
    assert score_reply("Okay.", "Fine.")["parameter_f1"] == 1.0
    assert score_reply("Okay.", ref)["parameter_f1"] == 0.0
    # A repeated setting counts twice against one reference occurrence.
    assert score_reply("Lights off. Fan off.", "Lights off.")["parameter_f1"] == pytest.approx(2 / 3)


def test_numerical_precision_uses_distinct_numbers():
    assert score_reply("21 and 22", "22 only")["numerical_precision"] == 0.5
    assert score_reply("30%, yes 30%", "30 percent")["numerical_precision"] == 1.0
    assert score_reply("twenty-five percent", "25%")["numerical_precision"] == 1.0
    assert score_reply("Done.", "Done.")["numerical_precision"] == 1.0
    assert score_reply("Done.", "Set to 5.")["numerical_precision"] == 0.0
    assert score_reply("", "")["numerical_precision"] == 1.0


def test_empty_strings_score_by_the_conventions():
    assert score_reply("", "") == {"device_precision": 1.0, "parameter_f1": 1.0, "numerical_precision": 1.0}
    assert score_reply("", "Bedroom lights to 30%.") == {
        "device_precision": 0.0, "parameter_f1": 0.0, "numerical_precision": 0.0}


def test_case_and_punctuation_do_not_matter():
    a = score_reply("BEDROOM LIGHTS -> 30%!!!", "bedroom lights to 30%")
    assert a == {"device_precision": 1.0, "parameter_f1": 1.0, "numerical_precision": 1.0}


def test_metric_names_and_labels():
    assert METRIC_NAMES[0] == "embedding_similarity"
    assert set(METRIC_NAMES[1:]) == set(score_reply("a", "b"))
    assert set(METRIC_LABELS) == set(METRIC_NAMES)


def test_worked_example_in_docs_metrics_md():
    """The numbers printed in docs/METRICS.md; change both together."""
    prediction = "Sure! I've set the bedroom lights to twenty-five percent and the heating to 21°C until 7 pm."
    reference = ("Setting the bedroom lamp to 30% brightness and the thermostat to 21 degrees "
                 "until 19:00. The living room fan is off.")
    p, r = parse_reply(prediction), parse_reply(reference)
    assert p.devices == (Device("bedroom", "light"), Device(None, "thermostat"))
    assert r.devices == (Device("bedroom", "light"), Device(None, "thermostat"), Device("living room", "fan"))
    assert p.parameters == (Parameter("brightness", "25"), Parameter("temperature", "21°C"),
                            Parameter("time", "19:00"))
    assert r.parameters == (Parameter("brightness", "30"), Parameter("temperature", "21°"),
                            Parameter("time", "19:00"), Parameter("state", "off"))
    assert p.numbers == ("25", "21", "19:00")
    assert r.numbers == ("30", "21", "19:00")
    s = score_reply(prediction, reference)
    assert s["device_precision"] == 1.0
    assert s["parameter_f1"] == pytest.approx(4 / 7)
    assert s["numerical_precision"] == pytest.approx(2 / 3)
