"""Real measured data shipped with sysid (public tables of historical measurements).

Each dataset loads into the trajectory schema with units, long names, and ``title``,
``citation``, ``description`` and ``dataset`` attributes; :func:`info` gives its description,
source, citation and a published reference fit to check results against. The CSV files live in
the repository's ``datasets/`` folder (see ``datasets/README.md``) and are read unchanged.

Examples
--------
>>> import sysid.datasets as sd
>>> "hare_lynx" in sd.list()
True
>>> ds = sd.load("hare_lynx")
>>> ds["hare"].attrs["units"], float(ds["time"][0, 0])
('thousand pelts', 1900.0)
"""

from __future__ import annotations

import builtins
import difflib
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from sysid.data import TIME, TRAJ, from_dataframe, load_csv
from sysid.errors import DataError, SysidError


class UnknownDatasetError(SysidError, KeyError):
    """A dataset name that sysid does not ship."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, kw_only=True)
class Variable:
    """One shipped column: its header in the file, its name in the dataset, units and long name."""

    column: str
    name: str
    units: str
    long_name: str


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What a shipped dataset is, where it comes from, and how it loads.

    Attributes
    ----------
    name, title, field : str
        Short name for :func:`load`, a title, and the scientific field.
    file : str
        Path of the CSV relative to the ``datasets/`` folder.
    description, source, citation, reference_fit : str
        What the numbers are, where they were copied from, what to cite, and a published fit.
    time : Variable
        The time column (name is always ``"time"`` in the dataset).
    states : tuple of Variable
        The measured columns loaded as states.
    trajectory : str or None
        Run-id column (long format), if any.
    """

    name: str
    title: str
    field: str
    file: str
    description: str
    source: str
    citation: str
    reference_fit: str
    time: Variable
    states: tuple[Variable, ...]
    trajectory: str | None = None


def _var(column: str, name: str, units: str, long_name: str) -> Variable:
    return Variable(column=column, name=name, units=units, long_name=long_name)


_YEAR = _var("year", TIME, "year", "year")
_LV_FIT = (
    "Lotka-Volterra u' = (a - b v) u, v' = (-c + d u) v (u = hare, v = lynx, t in years from 1900): Stan "
    "case study (Carpenter 2018) posterior means a = 0.55, b = 0.028, c = 0.80, d = 0.024 with lognormal "
    "measurement error; least squares on log populations with free initial states gives 0.540, 0.0272, "
    "0.796, 0.0237; least squares on raw counts gives 0.481, 0.0248, 0.926, 0.0275."
)
_HBC = "Hudson's Bay Company fur records"

_CATALOGUE: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="hare_lynx", title="Hudson's Bay Company hare and lynx pelts, 1900-1920", field="biology",
        file="biology/hudson_bay_hare_lynx_1900_1920.csv",
        description="Annual numbers of snowshoe hare and Canada lynx pelts traded (thousands), 21 years.",
        source=f"{_HBC}, as tabulated by Howard (2009) and used in the Stan Lotka-Volterra case study.",
        citation=("Howard, P. (2009), lecture notes, Texas A&M University (the table as cited by Carpenter "
                  "2018); Carpenter, B. (2018), Predator-Prey Population Dynamics: the Lotka-Volterra model "
                  "in Stan, Stan case studies."),
        reference_fit=_LV_FIT, time=_YEAR,
        states=(_var("hare_kpelts", "hare", "thousand pelts", "snowshoe hare pelts"),
                _var("lynx_kpelts", "lynx", "thousand pelts", "Canada lynx pelts")),
    ),
    DatasetInfo(
        name="hare_lynx_1845_1935", title="Hudson's Bay Company hare and lynx pelts, 1845-1935",
        field="biology", file="biology/hudson_bay_hare_lynx_1845_1935.csv",
        description=("Annual hare and lynx pelts (thousands), 91 years; its 1900-1920 values differ from "
                     "those of hare_lynx."),
        source=f"{_HBC}, values as in the R package tsibbledata (data set pelt).",
        citation="O'Hara-Wild, M., Hyndman, R. & Wang, E., tsibbledata: Diverse Datasets for tsibble (pelt).",
        reference_fit="None verified.", time=_YEAR,
        states=(_var("hare_kpelts", "hare", "thousand pelts", "snowshoe hare pelts"),
                _var("lynx_kpelts", "lynx", "thousand pelts", "Canada lynx pelts")),
    ),
    DatasetInfo(
        name="lynx_trappings", title="Canadian lynx trappings, 1821-1934", field="biology",
        file="biology/lynx_trappings_1821_1934.csv",
        description="Annual numbers of lynx trapped in the Mackenzie River district, 114 years.",
        source=f"{_HBC}, compiled by Elton and Nicholson (1942).",
        citation=("Elton, C. & Nicholson, M. (1942). The ten-year cycle in numbers of the lynx in Canada. "
                  "Journal of Animal Ecology 11(2), 215-244."),
        reference_fit="None verified.", time=_YEAR,
        states=(_var("lynx_trapped", "lynx", "count", "lynx trapped"),),
    ),
    DatasetInfo(
        name="influenza_1978", title="Influenza in an English boarding school, 1978", field="epidemiology",
        file="epidemiology/influenza_england_1978_school.csv",
        description=("Boys confined to bed and convalescent each day of a 14-day influenza outbreak among "
                     "763 boys; day 1 is 1978-01-22, so time 0 is 1978-01-21."),
        source="British Medical Journal (1978), news item 'Influenza in a boarding school'.",
        citation=("Anonymous (1978). Influenza in a boarding school. British Medical Journal 1978;1:587; "
                  "Keeling, M. J. & Rohani, P. (2008). Modeling Infectious Diseases in Humans and Animals. "
                  "Princeton University Press."),
        reference_fit=("SIR with I ~ in_bed, N = 763, S0 = 762, I0 = 1 at day 0: least squares beta = 1.669 "
                       "/day, gamma = 0.4435 /day (R0 = 3.76); Keeling & Rohani: beta = 1.66, 1/gamma = 2.2 days."),
        time=_var("day", TIME, "day", "day of outbreak"),
        states=(_var("in_bed", "in_bed", "boys", "boys confined to bed"),
                _var("convalescent", "convalescent", "boys", "boys convalescent")),
    ),
    DatasetInfo(
        name="us_population", title="US census population, 1790-1970", field="economics",
        file="economics/us_population_census_1790_1970.csv",
        description="Decennial US census population (millions), 19 censuses.",
        source="U.S. Census Bureau decennial census counts.",
        citation=("U.S. Census Bureau; Pearl, R. & Reed, L. J. (1920). On the rate of growth of the "
                  "population of the United States since 1790 and its mathematical representation. PNAS "
                  "6(6), 275-288."),
        reference_fit=("Logistic N' = r N (1 - N/K): Pearl & Reed (1920) K = 197.27 million, r = 0.0313395 "
                       "/year (within ~3 % of the census through 1930); least squares on 1790-1910: "
                       "K = 190.7 million, r = 0.03155 /year."),
        time=_YEAR, states=(_var("pop_millions", "population", "million people", "US population"),),
    ),
    DatasetInfo(
        name="us_phillips", title="US unemployment and inflation, 1948-2003", field="economics",
        file="economics/us_phillips_1948_2003.csv",
        description="Annual civilian unemployment rate and CPI inflation rate (percent), 56 years.",
        source="Economic Report of the President, via Wooldridge's data set PHILLIPS.",
        citation=("Economic Report of the President (2004); Wooldridge, J. M. Introductory Econometrics: A "
                  "Modern Approach, data set PHILLIPS, Example 11.5."),
        reference_fit=("Accelerationist Phillips curve: change in inflation = 3.031 - 0.543 unem on "
                       "1948-1996 (n = 48; Wooldridge Example 11.5); natural rate 5.58 %."),
        time=_YEAR, states=(_var("unem", "unem", "%", "civilian unemployment rate"),
                            _var("inf", "inf", "%", "CPI inflation rate")),
    ),
    DatasetInfo(
        name="sunspots", title="Yearly sunspot numbers, 1700-2008", field="physics",
        file="physics/sunspots_yearly_1700_2008.csv",
        description="Yearly mean sunspot number, 309 years (public domain; also in statsmodels).",
        source="NOAA National Geophysical Data Center yearly sunspot numbers.",
        citation="NOAA National Geophysical Data Center, yearly sunspot numbers (statsmodels data set sunspots).",
        reference_fit="None: one observed state of an oscillator (partially observed dynamics).",
        time=_YEAR, states=(_var("sunspot_number", "sunspots", "1", "yearly mean sunspot number"),),
    ),
    DatasetInfo(
        name="bod", title="Biochemical oxygen demand", field="chemistry",
        file="chemistry/bod_biochemical_oxygen_demand.csv",
        description="Biochemical oxygen demand of a water sample at 6 times (days).",
        source="Marske (1967), as in Bates and Watts (1988) and R's data set BOD.",
        citation=("Marske, D. (1967). Biochemical oxygen demand data interpretation using sum of squares "
                  "surface. M.Sc. thesis, University of Wisconsin; Bates, D. M. & Watts, D. G. (1988). "
                  "Nonlinear Regression Analysis and Its Applications. Wiley."),
        reference_fit="y' = k (A - y), y(0) = 0: A = 19.143 mg/L, k = 0.5311 /day.",
        time=_var("Time", TIME, "day", "time"),
        states=(_var("demand", "demand", "mg/L", "biochemical oxygen demand"),),
    ),
    DatasetInfo(
        name="theophylline", title="Theophylline pharmacokinetics", field="chemistry",
        file="chemistry/theophylline_pk.csv",
        description=("Serum theophylline concentration of 12 subjects at 11 irregular times after an oral "
                     "dose; one run per subject. The dose (mg/kg) and body weight (kg) are per-run "
                     "coordinates 'dose' and 'weight' along 'trajectory' (a bolus at time 0, not an input)."),
        source="R data set Theoph (Boeckmann, Sheiner and Beal 1994).",
        citation=("Boeckmann, A. J., Sheiner, L. B. & Beal, S. L. (1994). NONMEM Users Guide, Part V; "
                  "Pinheiro, J. C. & Bates, D. M. (2000). Mixed-Effects Models in S and S-PLUS. Springer."),
        reference_fit=("One compartment with first-order absorption; nlme fixed effects lKe = -2.4327, "
                       "lKa = 0.4514, lCl = -3.2145 (natural logs; not verified here)."),
        time=_var("Time", TIME, "h", "time since dose"),
        states=(_var("conc", "conc", "mg/L", "theophylline concentration"),), trajectory="Subject",
    ),
    DatasetInfo(
        name="mauna_loa_co2", title="Mauna Loa weekly CO2, 1958-2001", field="physics",
        file="physics/mauna_loa_co2_weekly_1958_2001.csv",
        description=("Weekly atmospheric CO2 mole fraction (ppm) with missing weeks kept as NaN; time in "
                     "days since the first week (1958-03-29, the time coordinate's 'origin')."),
        source="Scripps Institution of Oceanography / NOAA, continuous air samples at Mauna Loa "
               "(statsmodels data set co2).",
        citation=("Keeling, C. D. et al., atmospheric CO2 from continuous air samples at Mauna Loa "
                  "Observatory, Hawaii (public domain; statsmodels data set co2)."),
        reference_fit="None: a test of irregular and missing-data handling.",
        time=_var("week", TIME, "days", "time"),
        states=(_var("co2", "co2", "ppm", "atmospheric CO2"),),
    ),
    DatasetInfo(
        name="us_macrodata", title="US macroeconomic data, 1959Q1-2009Q3", field="economics",
        file="economics/us_macrodata_1959q1_2009q3.csv",
        description=("Quarterly US real GDP, consumption, investment (billions of chained 2005 dollars, "
                     "seasonally adjusted annual rates), unemployment, inflation and 3-month T-bill rate "
                     "(percent); time = year + (quarter - 1) / 4."),
        source="Federal Reserve Bank of St. Louis (FRED), BLS and BEA (statsmodels data set macrodata).",
        citation="FRED, Federal Reserve Bank of St. Louis; U.S. Bureau of Labor Statistics (statsmodels macrodata).",
        reference_fit="None verified.",
        time=_var("year", TIME, "year", "year"),
        states=(_var("realgdp", "realgdp", "billion 2005 USD/year", "real GDP"),
                _var("realcons", "realcons", "billion 2005 USD/year", "real personal consumption"),
                _var("realinv", "realinv", "billion 2005 USD/year", "real private investment"),
                _var("unemp", "unemp", "%", "unemployment rate"),
                _var("infl", "infl", "%", "inflation rate (annualised)"),
                _var("tbilrate", "tbilrate", "%", "3-month Treasury bill rate")),
    ),
)
_BY_NAME = {d.name: d for d in _CATALOGUE}


def folder() -> Path:
    """The folder holding the shipped CSVs: the repository's ``datasets/``, else an installed copy."""
    candidates = [Path(__file__).resolve().parents[1] / "datasets",
                  Path(sys.prefix) / "share" / "sysid" / "datasets"]
    for c in candidates:
        if c.is_dir():
            return c
    raise DataError(f"sysid.datasets: the shipped data folder was not found (looked in "
                    f"{[str(c) for c in candidates]}); install sysid from its repository with pip install -e.")


def info(name: str) -> DatasetInfo:
    """Description, source, citation and reference fit of the dataset ``name``."""
    if name not in _BY_NAME:
        close = difflib.get_close_matches(str(name), _BY_NAME, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownDatasetError(f"sysid.datasets: no dataset {name!r}; datasets are {sorted(_BY_NAME)}.{hint}")
    return _BY_NAME[name]


def path(name: str) -> Path:
    """Path of the dataset's CSV file."""
    return folder() / info(name).file


def _finish(ds: xr.Dataset, meta: DatasetInfo, file: Path) -> xr.Dataset:
    ds = ds.rename({v.column: v.name for v in meta.states if v.column != v.name})
    for v in meta.states:
        ds[v.name].attrs.update(units=v.units, long_name=v.long_name)
    ds[TIME].attrs.update(units=meta.time.units, long_name=meta.time.long_name)
    if meta.trajectory is None:
        ds = ds.assign_coords({TRAJ: np.array([meta.name], dtype=object)})
    ds.attrs.update(source=f"datasets/{meta.file}", dataset=meta.name, title=meta.title,
                    description=meta.description, citation=meta.citation)
    ds.attrs["source_sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    return ds


def load(name: str) -> xr.Dataset:
    """Load a shipped dataset into the trajectory schema (units, long names, citation attrs).

    Examples
    --------
    >>> ds = load("theophylline")
    >>> ds.sizes["trajectory"], ds["dose"].attrs["units"]
    (12, 'mg/kg')
    """
    meta = info(name)
    file = path(name)
    columns = [v.column for v in meta.states]
    if name == "us_macrodata":
        df = pd.read_csv(file)
        df["time"] = df["year"] + (df["quarter"] - 1) / 4
        ds = from_dataframe(df, time="time", states=columns)
    else:
        ds = load_csv(file, time=meta.time.column, states=columns, trajectory=meta.trajectory)
    ds = _finish(ds, meta, file)
    if name == "influenza_1978":
        ds[TIME].attrs["origin"] = "1978-01-21"
        ds.attrs["population"] = 763
    if name == "theophylline":
        table = pd.read_csv(file).groupby("Subject", sort=False).first()
        ids = [str(s) for s in table.index]
        if ids != [str(r) for r in ds[TRAJ].values]:
            raise DataError(f"sysid.datasets: {file} has subjects {ids} out of order with the runs.")
        ds = ds.assign_coords(
            dose=(TRAJ, table["Dose"].to_numpy(dtype=float), {"units": "mg/kg", "long_name": "oral dose"}),
            weight=(TRAJ, table["Wt"].to_numpy(dtype=float), {"units": "kg", "long_name": "body weight"}),
        )
    return ds


def list() -> builtins.list[str]:  # noqa: A001 - the public verb is list()
    """Sorted names of the shipped datasets (defined last so ``list`` is the builtin above)."""
    return sorted(_BY_NAME)


__all__ = ["DatasetInfo", "UnknownDatasetError", "Variable", "folder", "info", "list", "load", "path"]
