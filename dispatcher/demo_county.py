"""The sample county of `jiaoying demo`: fictional 青溪县 written out as directory CSV files.

`write_demo_directory` writes `regions.csv`, `responders.csv` and `speakers.csv` that
`dispatcher.directory.import_directory` takes as they are: a county of five townships,
three or four villages or communities each, two or three grids per village, and about
two hundred responders with Chinese names, fictional mobile numbers and WeCom ids, each
with a duty, a supervisor and (below the county leader) a backup, plus one village speaker
(应急广播) per village on the simulated provider, and made-up boundaries for the map
(`regions.geojson`, `dispatcher.demo_map`). The same seed gives the same files.

Who is who (the external id says it): `cl-`/`cd-` the county leader and two county duty
officers; `tl-`/`td-` a township's leader and duty officer; `vs-`/`vd-` a village's party
secretary (村支书) and committee director (村主任); `vm-` further village committee members
and group leaders, who bring the county to about two hundred people; `gw-` one grid worker
per grid.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

from dispatcher.demo_map import write_demo_geometry
from dispatcher.directory_rows import COLUMNS, REGIONS_FILE, RESPONDERS_FILE, SPEAKERS_FILE

COUNTY_CODE = "441799000000"
COUNTY_NAME = "青溪县"
TARGET_RESPONDERS = 200
WECOM_SHARE = 0.6
SECOND_PHONE_SHARE = 0.1

# (name, how many of its villages are urban communities: None = all of them)
_TOWNSHIPS: list[tuple[str, int | None]] = [
    ("城关镇", 2),
    ("河口镇", 0),
    ("石门镇", 0),
    ("龙潭乡", 0),
    ("白沙街道", None),
]
_VILLAGE_NAMES = (
    "上坪村",
    "下洞村",
    "石桥村",
    "枫树村",
    "竹园村",
    "大坑村",
    "黄泥村",
    "柏林村",
    "新塘村",
    "高岭村",
    "水口村",
    "杉木村",
    "茶园村",
    "长坑村",
    "岭背村",
    "湖洋村",
    "桂花村",
    "双溪村",
    "龙眼村",
    "坑口村",
    "塘背村",
    "梅子村",
    "下坝村",
    "社背村",
)
_COMMUNITY_NAMES = (
    "新民社区",
    "城东社区",
    "城西社区",
    "和平社区",
    "解放社区",
    "滨江社区",
    "沙湾社区",
    "白沙社区",
    "文昌社区",
    "南门社区",
)
_ORDINALS = "一二三四五六七八九十"
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢钟谭陆汪范廖夏韦方邹熊邱江赖温古"
)
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文辉海燕玲林春梅兰金荣德忠"
    "永新福贵清水生斌宇浩俊峰鹏飞晓慧婷雪琴云凤玉珍家宏伟成发才武松"
)
_MOBILE_PREFIXES = ("139", "138", "137", "136", "135", "159", "158", "188", "187", "150")


@dataclass
class _Person:
    external_id: str
    role: str
    regions: list[str]
    backup: str = ""
    supervisor: str = ""
    name: str = ""
    phones: list[str] = field(default_factory=list)
    wecom: str = ""


@dataclass
class _Region:
    code: str
    name: str
    level: str
    parent: str
    children: list[_Region] = field(default_factory=list)


class _People:
    """Hands out unique names, phone numbers and WeCom ids from one seeded generator."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._names: set[str] = set()
        self._phones: set[str] = set()
        self._wecom: set[str] = set()

    def name(self) -> str:
        while True:
            given = "".join(self._rng.choices(_GIVEN, k=self._rng.choice((1, 2, 2, 2))))
            name = self._rng.choice(_SURNAMES) + given
            if name not in self._names:
                self._names.add(name)
                return name

    def phone(self) -> str:
        while True:
            number = f"+86{self._rng.choice(_MOBILE_PREFIXES)}{self._rng.randrange(10**8):08d}"
            if number not in self._phones:
                self._phones.add(number)
                return number

    def wecom(self) -> str:
        while True:
            userid = f"u{self._rng.randrange(10**6):06d}"
            if userid not in self._wecom:
                self._wecom.add(userid)
                return userid

    def fill(self, person: _Person) -> None:
        person.name = self.name()
        person.phones = [self.phone()]
        if self._rng.random() < SECOND_PHONE_SHARE:
            person.phones.append(self.phone())
        if self._rng.random() < WECOM_SHARE:
            person.wecom = self.wecom()


def build_regions(rng: random.Random) -> _Region:
    """The county's tree: townships, their villages or communities, and their grids."""
    county = _Region(COUNTY_CODE, COUNTY_NAME, "county", "")
    villages = rng.sample(_VILLAGE_NAMES, len(_VILLAGE_NAMES))
    communities = rng.sample(_COMMUNITY_NAMES, len(_COMMUNITY_NAMES))
    for index, (township_name, urban) in enumerate(_TOWNSHIPS):
        township_code = f"{COUNTY_CODE[:6]}{100 + index:03d}000"
        township = _Region(township_code, township_name, "township", county.code)
        county.children.append(township)
        count = rng.randint(3, 4)
        urban_count = count if urban is None else urban
        for number in range(count):
            # Statistical codes number residents' committees from 001, villages from 201.
            if number < urban_count:
                name, serial = communities.pop(), 1 + number
            else:
                name, serial = villages.pop(), 201 + number - urban_count
            village = _Region(f"{township_code[:9]}{serial:03d}", name, "village", township_code)
            township.children.append(village)
            for grid_number in range(1, rng.randint(2, 3) + 1):
                grid_code = f"{village.code}{grid_number:03d}"
                grid_name = f"{name}第{_ORDINALS[grid_number - 1]}网格"
                village.children.append(_Region(grid_code, grid_name, "grid", village.code))
    return county


def build_people(county: _Region, rng: random.Random) -> list[_Person]:
    """Everyone who answers for a place in the county, with supervisors and backups."""
    leader = _Person(f"cl-{county.code}", "county_leader", [county.code])
    duty = [_Person(f"cd-{county.code}-{n}", "county_duty", [county.code]) for n in (1, 2)]
    duty[0].backup, duty[1].backup = duty[1].external_id, duty[0].external_id
    for officer in duty:
        officer.supervisor = leader.external_id
    people = [leader, *duty]
    villages = [village for township in county.children for village in township.children]
    grids = sum(len(village.children) for village in villages)
    fixed = len(people) + 2 * len(county.children) + 2 * len(villages) + grids
    members = _spread(max(TARGET_RESPONDERS - fixed, 0), len(villages), rng)
    for index, township in enumerate(county.children):
        t_lead = _Person(f"tl-{township.code}", "township_leader", [township.code])
        t_duty = _Person(f"td-{township.code}", "township_duty", [township.code])
        t_lead.backup, t_duty.backup = t_duty.external_id, t_lead.external_id
        t_lead.supervisor = t_duty.supervisor = duty[index % 2].external_id
        people += [t_lead, t_duty]
        for village in township.children:
            people += _village_people(village, t_lead.external_id, members.pop())
    generator = _People(rng)
    for person in people:
        generator.fill(person)
    return people


def _village_people(village: _Region, township_leader: str, members: int) -> list[_Person]:
    secretary = _Person(f"vs-{village.code}", "village_cadre", [village.code])
    director = _Person(f"vd-{village.code}", "village_cadre", [village.code])
    secretary.backup, director.backup = director.external_id, secretary.external_id
    secretary.supervisor = director.supervisor = township_leader
    committee = [
        _Person(
            f"vm-{village.code}-{n}",
            "village_cadre",
            [village.code],
            supervisor=secretary.external_id,
        )
        for n in range(1, members + 1)
    ]
    workers = [
        _Person(f"gw-{grid.code}", "grid_worker", [grid.code], supervisor=secretary.external_id)
        for grid in village.children
    ]
    for group in (committee, workers):
        for n, person in enumerate(group):
            others = len(group) > 1
            person.backup = (
                group[(n + 1) % len(group)].external_id if others else director.external_id
            )
    return [secretary, director, *committee, *workers]


def _spread(total: int, buckets: int, rng: random.Random) -> list[int]:
    """`total` split over `buckets` as evenly as possible, the remainder placed at random."""
    shares = [total // buckets] * buckets
    for bucket in rng.sample(range(buckets), total % buckets):
        shares[bucket] += 1
    return shares


def write_demo_directory(directory: Path, *, seed: int = 7) -> None:
    """Write the sample county's regions.csv, responders.csv and speakers.csv (UTF-8)."""
    rng = random.Random(seed)
    county = build_regions(rng)
    people = build_people(county, rng)
    regions: list[_Region] = []
    pending = [county]
    while pending:
        region = pending.pop(0)
        regions.append(region)
        pending.extend(region.children)
    villages = [region for region in regions if region.level == "village"]
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / REGIONS_FILE, [[r.code, r.name, r.level, r.parent] for r in regions])
    _write(
        directory / RESPONDERS_FILE,
        [
            [
                p.external_id,
                p.name,
                ";".join(p.phones),
                p.wecom,
                p.role,
                ";".join(p.regions),
                p.backup,
                p.supervisor,
            ]
            for p in people
        ],
    )
    _write(
        directory / SPEAKERS_FILE,
        [
            [f"spk-{v.code}", f"{v.name}应急广播", v.code, "simulated", f"spk-{v.code}"]
            for v in villages
        ],
    )
    write_demo_geometry(directory, county)


def _write(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(COLUMNS[path.name])
        writer.writerows(rows)
