"""One place to change a default: dis-train's options take theirs from DISConfig and TrainOptions."""

import dataclasses

import click

from disseg.train.cli import train_cli
from disseg.train.config import DISConfig, TrainOptions

PARSED_BY_THE_COMMAND = {"eval_iters"}  # a text option the command turns into the field's type itself


def _field_defaults() -> dict:
    defaults = {}
    for cls in (DISConfig, TrainOptions):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
    return defaults


def test_every_train_option_defaults_to_its_field():
    fields = _field_defaults()
    # what the command receives when only the required options are given
    received = train_cli.make_context("dis-train", ["--data", "d", "--out", "o"]).params
    checked = 0
    for option in (p for p in train_cli.params if isinstance(p, click.Option)):
        if option.name not in fields or option.name in PARSED_BY_THE_COMMAND or option.required:
            continue
        wanted = fields[option.name]
        given = received[option.name]
        if isinstance(option.type, click.Choice) and given is not None:
            wanted = str(wanted)  # numeric choices (--stage, --output-stride) are offered as text
        assert given == wanted, f"--{option.name.replace('_', '-')} defaults to {given!r}, its field to {wanted!r}"
        checked += 1
    assert checked >= 20, f"only {checked} options matched a field: did the names drift apart?"


def test_every_option_is_a_field_or_named_here():
    fields = _field_defaults() | {"class_names": None, "data": None, "out": None, "verbose": None}  # every command
    stray = {p.name for p in train_cli.params if isinstance(p, click.Option)} - set(fields)
    assert not stray, f"dis-train options without a DISConfig/TrainOptions field: {sorted(stray)}"
