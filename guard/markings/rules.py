"""Stable rule ids of the markings engine's findings (CAPCO-2016 section in brackets).

Input hygiene (``lexical``)
    input-empty               empty or blank marking
    input-too-long            longer than ``lexical.MAX_LEN`` characters (not parsed)
    input-bad-char            control, binary or non-ASCII character that is not a look-alike
    input-lookalike           a character that imitates an ASCII letter (Cyrillic "С",
                              Greek "Τ", full-width "Ｓ"...) - reported on its own
    input-lowercase           lower case [D.1: upper case]
    input-whitespace          leading/trailing/double spaces, spaces around "/" [C.1, D.1]
Syntax (``parse``)
    syntax-parentheses        portion mark not in one pair of parentheses, or banner in them
    syntax-empty-category     "TS////NF": no place holders for absent categories [D.1]
    syntax-empty-token        "NF/" or "NF//OC/": empty marking between "/" separators
    syntax-separator          a marking of another category joined with "/" instead of "//",
                              or "/" inside the classification
    syntax-unknown-token      not in the Register (nor an unpublished SCI system)
    syntax-category-order     categories out of order: class//SCI//SAP//AEA//FGI//dissem//non-IC
    syntax-category-repeated  one category split in two ("RS//IMC/NF")
    syntax-token-order        markings within a category out of Register order; SCI systems,
                              compartments, sub-compartments not alphanumeric [D.1, H.4]
    syntax-duplicate          a marking repeated, or "SAR-" repeated
Forms (``parse``)
    form-class-abbrev         abbreviated classification in a banner line [D.1]
    form-portion-in-banner    a portion-only form in a banner (NF, OC, REL, SG, DCNI...)
    form-banner-in-portion    a banner title/abbreviation in a portion (NOFORN, TALENT
                              KEYHOLE, SIGMA, a spelt-out SAP program identifier...) [C.1]
Classification
    class-unknown             no recognisable classification
    class-us-restricted       RESTRICTED used as a US classification
    class-nato                not a NATO level (COSMIC SECRET, NATO TOP SECRET, NATO S)
    class-non-us-usa          USA as the owner of a non-US classification
    class-fgi-banner          "//FGI SECRET" as a banner (concealed FGI banners read SECRET//FGI)
Lists (REL TO, DISPLAY ONLY, EYES ONLY, JOINT, FGI, owners)
    list-empty                no codes
    list-unknown-code         not a registered trigraph or tetragraph
    list-separator            REL TO / DISPLAY ONLY need ", "; JOINT / FGI need " "
    list-order                USA first (REL TO, EYES), then trigraphs, then tetragraphs,
                              each alphabetical [H.8 REL TO]
    list-duplicate            a code repeated
    rel-no-usa                REL TO without USA
    rel-usa-only              REL TO USA and nothing else
Relationships (``validate``, data in guard/data/register.tsv)
    control-classification    marking not allowed at this classification level [H templates]
    control-requires          a marking requires another one (HCS-O needs ORCON, ...)
    control-conflict          two markings that cannot be used together (ORCON/ORCON-USGOV,
                              EXDIS/NODIS, RD/FRD)
    noforn-conflict           NOFORN (or SBU/LES NOFORN) with REL TO, RELIDO, EYES ONLY or
                              DISPLAY ONLY [H.8 NOFORN]
    fdr-conflict              other FD&R conflicts (RELIDO with DISPLAY ONLY, REL TO with EYES)
    nonic-requires-noforn     EXDIS or NODIS without NOFORN [H.9]
    sci-requires-noforn       HCS, HCS-O/P, TK-BLFH/IDIT/KAND and their sub-compartments
                              without NOFORN [H.4]
    sci-compartment-required  HCS or RSV used alone [H.4]
    sci-unknown-compartment   compartment not registered for the control system
    sci-compartment-format    sub-compartment of the wrong length/form
    aea-cnwdi                 CNWDI with FRD [H.6]
    aea-sigma                 SIGMA numbers not ascending/unique, FRD SIGMA other than
                              14/15/18/20, SIGMA without RD/FRD [H.6]
    fgi-usa                   USA in an FGI list
    fgi-non-us                FGI marking on a non-US or JOINT classification
    joint-list                JOINT without USA, with one co-owner, or a banner without
                              its co-owner list [H.3]
    joint-classification      JOINT RESTRICTED [H.3]
    joint-rel-required        JOINT without REL TO [H.3]
    joint-control             JOINT with NOFORN or HCS [H.3]
    nonus-control             ATOMAL/BALK/BOHEMIA on a non-NATO classification
    nonus-noforn              NOFORN on NATO information
Banner roll-up (``rollup.check_banner``)
    banner-rollup-classification, banner-rollup-sci, banner-rollup-sap, banner-rollup-aea,
    banner-rollup-fgi, banner-rollup-non-us, banner-rollup-dissem, banner-rollup-non-ic
                              the banner differs from the roll-up of its portions [D.2]
Internal
    internal-error            the parser failed (never expected; fails closed)
"""

from __future__ import annotations

import re

#: every rule id documented above
RULES: frozenset[str] = frozenset(
    m.group(1) for m in re.finditer(r"^    ([a-z]+(?:-[a-z]+)+)\b", __doc__ or "", re.M)
) | frozenset(f"banner-rollup-{c}" for c in (
    "classification", "sci", "sap", "aea", "fgi", "non-us", "dissem", "non-ic"))
