"""placeholder"""
from petcd.ctl.cli import Command
def commands() -> list[Command]:
    return []
def safe_defrag(env: object) -> int:
    return 1
def member_replace(env: object) -> int:
    return 1
