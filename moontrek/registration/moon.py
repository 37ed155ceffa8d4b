"""Finding the Moon's disk in a photo or a model render.

The Moon is, nearly always, the brightest compact thing in its picture and a
perfect circle (a far-away sphere seen under any tilt), while what spoils a
naive detector is not: haloes and glow are soft, the terminator of a crescent
and the silhouettes of branches or clouds bite concave notches into the lit
region, and the frame's border cuts cropped photos. So the detector thresholds
a brightness image at several levels, keeps the parts of each region's outline
that lie on its convex hull (the lit limb: notches are concave, the border is
known), fits circles to them (RANSAC, a whole-limb fit for oval blurred blobs,
and the deepest inscribed circle for a Moon fused with lit cloud), lets each
circle gather the limb pieces that branches cut off, and picks the one whose
rim is the brightest, most complete step down to the sky. Craters inside a
better disk are dropped; several similar disks (coins, lamps) mean no Moon.
When nothing is the Moon and the brightest things were turned down (lamps,
a planet), the frame is read once more on the range outside them.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import NoMoonError

__all__ = ["Circle", "find_moon", "find_moon_how", "moon_candidates", "limb_is_sharp", "MAX_WORK_PIXELS"]

#: Detection runs on a copy at most this large; the answer is scaled back.
MAX_WORK_PIXELS = 1_000_000

_NO_MOON = "No Moon was found in the image."

# Fractions of the way from the sky's level to the brightest pixel. Several
# levels because no single one works: a halo needs a high one to keep the
# core apart, a dim limb or a dark-shaded render a low one.
_LEVELS = (0.12, 0.22, 0.35, 0.5, 0.65, 0.8, 0.92)
_MAX_REGIONS_PER_LEVEL = 8
# A Moon seen through branches is cut into pieces, none holding enough of
# its rim for a circle of the whole: each level is looked at once more with
# its dark gaps up to _CLOSE_GAP of the frame's shorter side closed (a
# twig or a limb of a tree in a phone photo: 3-8 working pixels), where the
# closing filled at least _CLOSE_FILLED of the region with pixels well
# below the level (_CLOSE_NOISE times the noise and _CLOSE_DARK of the
# level's height above the sky: a glow's ragged edge at a level through its
# gentle slope is only noise below it) and the region is at least
# _CLOSE_SIZE gaps in radius (two lamps a gap apart close into a blob the
# gap's size). On the cached detection sets (2,302 Moons, 1,103 Moon-less
# scenes) 8 Moons more, one clipped Moon lost (0.33 r off, 0.2 r before),
# no Moon-less scene answered (README, "A Moon seen through branches").
_CLOSE_GAP = 0.01
_CLOSE_FILLED = 0.02
_CLOSE_DARK = 0.1
_CLOSE_NOISE = 8.0
_CLOSE_SIZE = 2.5
_CLOSE_REGIONS = 4  # the largest joined regions of a level, at most
# A joined circle no more than _JOINED_LUMP of an unjoined Moon's radius
# and inside it (to _JOINED_INSIDE of its radius) is a lump of that disk;
# one showing less than _JOINED_COVERAGE of its limb is no Moon (Moons
# seen through branches: 0.43-0.74; circles through a lamp and its
# neighbours joined: 0.26-0.38).
_JOINED_COVERAGE = 0.4
_JOINED_INSIDE = 1.1
_JOINED_LUMP = 0.6
_MIN_RADIUS = 3.0  # working pixels: below this a "disk" is a star or noise
_MIN_RANGE = 24.0  # grey levels between sky and brightest: less is a blank frame
_RANSAC_TRIALS = 160
_ANGLE_BINS = 72
_MIN_SCORE = 0.01  # below this no candidate is a Moon
# Grey levels between the disk and the ring around it, at least, or this
# share of the frame's range when that is less (and six times the noise
# anyway): an underexposed Moon in a frame whose brightest pixel is 47
# stood 14 levels above its ring, a third of the range, and was refused.
_MIN_CONTRAST = 20.0
_MIN_CONTRAST_SHARE = 0.3
_MIN_RADIUS_FOUND = 4.5  # working pixels
_RIVAL_SHARE = 0.2  # a look-alike scores at least this share of the best
# Objects are ranked by score times contrast squared: street lamps blown
# out in their glare outscore a dimmer Moon on brightness (0.22-0.37 against
# 0.08-0.17), with a contrast of 0.4-0.57 against its 0.86-0.96.
_RANK_POWER = 2.0
_CONTAINER_SHARE = 0.5  # a disk drops the features inside it from this share
# ... and when it stands out of what is round it at least this share as much
# as they do: a crater or ray inside the Moon has the Moon's bright surface
# round it (contrast 0.15 against the Moon's 0.9), while a loose circle round
# a Moon cut by the frame, half in the glow of a city sky (0.37), is no disk
# holding the Moon's own circle (0.48; second generator's seed 20026).
_CONTAINER_CONTRAST = 0.9
# A sharp arc standing out of its sky (a crescent or a half Moon, or a disk
# cut by the frame's edge, its lit limb partly outside) is a disk that
# contains what is fitted into its lit part from this share of its rim in
# frame seen as limb (other disks: 0.4): a half Moon across the frame's top
# edge shows 0.26 of it. Measured over every cached set: three Moons more
# found, nothing else changed.
_ARC_SEEN = 0.25
_CRATER = 0.3  # a crater's radius over its Moon's, at most (see _drop_surface_features)
_OWN_CORE = 0.5  # a small disk this far out from a larger one's centre is an object of its own (_same_object)
# A disk standing out of a dark sky (the ring around it falls this share of
# the way to the sky, at least) has no twin in a circle whose ring falls less
# than _TWIN_CONTRAST of that: a level of a lamp's glare. Measured on
# generated phone photos: Moons (halo or not, cut by the frame) 0.81-0.99,
# the glare circles taken for their twins 0.48-0.77 (see also _RANK_POWER).
# Only a disk of a Moon's size: a phone photo's Moon spans 8% of the short
# side or more, a small crescent a radius of 40 px in a 2 Mpx photo (3.3%
# of a 4:3 frame's short side), a star's core among the glares of other
# stars far less. At 3.5% crescents of 35-40 px lost to their own glare
# circles; at 2.5% a star and a lamp of the Moon-less sets stood out.
_STANDS_OUT = 0.8
_TWIN_CONTRAST = 0.8
_TWIN_MIN_RADIUS = 0.028  # of the frame's shorter side
# A Moon at a phase (its limb under half its circle: a crescent) has no twin
# in a whole disk (a lamp, a star's glare, a coin: 0.8 of its circle or
# more): look-alikes look alike. Crescents beside two lamps their size were
# refused with them.
_PHASE_COVERAGE = 0.5
_WHOLE_COVERAGE = 0.8
# A region that fills its smallest enclosing rectangle (a lit window, a
# sign) is no disk: a disk fills pi/4 of its square, and every region of
# the Moon on the phone sets (565 circles) filled 0.84 of its rectangle at
# most, the lit windows taken for Moons 0.98-0.99. Regions touching the
# frame are not judged: a Moon cut by a crop's edges fills its crop.
_MAX_RECT_FILL = 0.9
# A lamp's globe, blown out in its own glare, can outrank a Moon exposed
# for the scene (a brightness squared in the score): a blown-out first
# object (inside at 210 or more) that shows no surface gives way to a disk
# 1.5 times its radius or more, clear of the sky around it (contrast 0.6)
# and showing one (see _surface). Measured on the objects of the clipped
# set: lamps' and planets' cores 0.000-0.008, their glare's levels up to
# 0.036 (so 0.015 for "flat" is on the cores), the Moon's disks 0.04-0.055.
# A sodium lamp's globe, clipped in red and green only, reads under blown
# out in luminance: 227 beside a Moon 7 times its size (the second
# generator's seed 30062).
_FLAT_BRIGHT = 210.0
_FLAT_SURFACE = 0.015
# A Moon blown out in its luminance but not in its darkest channel shows
# its maria in that channel (they are two thirds as bright as the
# highlands); a yellow or orange lamp's globe is flat in every channel.
# Measured on every cached set (1,662 scenes and the real photos): the 30
# flat whole Moons read 245 or more on their darkest channel (75th
# percentile within 0.8 r; 250-255 for the real ones), the flat lamp globes
# taken for Moons 130-199 (8 of 22), their darkest channel as flat
# (0.000-0.007).
_GLOBE_CHANNEL = 225.0
# Two flat disks are a pair (headlights, lamp globes: see _choose) when
# the twin is a disk too, its limb a sharp step (_evaluate's step): the
# headlights' and lamp globes' 0.46-0.70; a blown-out Moon was refused as
# one of a pair with a lamp's glare behind roofs, its outline at 0.15.
_PAIR_STEP = 0.3
# The pair's disks need not be whole: two headlights close together, their
# glares meeting between them, show their limbs round 0.76 of their circles
# (the second generator's seeds 95095, 110155 were answered at 0.8). No
# answer of the cached sets changed otherwise.
_PAIR_COVERAGE = 0.7
# A twin of the pair is flat when it or a circle round the same centre at
# least this share of its size is (see _flat_core): a headlight's circle
# through its glare's fall, just large enough not to be a point (0.013 of
# the short side), reads 0.04 of surface; its core's circle, 0.85 of its
# size, 0.008-0.014. A wider glare's circle holds its core at 0.70 (the
# second generator's 110135: 7.2 px in 10.3; 100115), so 0.6: no answer of
# the cached sets changed otherwise.
_CORE_SHARE = 0.6
_MOON_SURFACE = 0.03
_SURFACE_LARGER = 1.5
_SURFACE_CONTRAST = 0.6
# A disk too small to show a surface (under _POINT_GLARE_SHARE of the short
# side) gives way as a flat one does, to a disk this many times its size:
# its few pixels of rim and glow read as detail, so it is never "flat". A
# yellow globe of 14 px (1.3% of the side), brighter and sharper than the
# gibbous Moon ten times its size beside it, was answered (the second
# generator's seed 70184 on the shared maps). Not 3 times: a globe's
# circle takes in some of its bloom, and a full Moon 2.99 times a globe of
# 1.4% of the side (its surface 0.07) was the globe's answer (the second
# generator's seed 91018).
_POINT_LARGER = 2.5
# ... and a limb round at least 0.4 of it: the Moons put first so (cut by
# the frame) 0.62-0.78, gibbous Moons beside a lamp's globe whose post
# does not show 0.46-0.49; a circle round roofs lit by a glow, put before
# an over-exposed Moon, 0.18.
_SURFACE_COVERAGE = 0.4
# A crescent shows too little of its surface inside 0.8 r to be read, and
# its limb runs round under half its circle: it goes before the flat disk
# with a limb round 0.3 of it (the roofs' circle above: 0.18) stepping
# sharply down to the sky (_SHARP_STEP, the bound for a crescent's sharp
# limb elsewhere): crescents beside a globe, phases 100-140, step
# 0.22-0.35 round 0.35-0.49 of their circle.
_CRESCENT_COVERAGE = 0.3
# Its lit part lies within its limb, so the hull of that region runs along
# the circle (support 0.96-1.00 on 48 built crescents beside a globe, phases
# 100-140); a glow of lamps in a cloud behind trees, whose edge is trees'
# silhouettes stepping as sharply, 0.72.
_CRESCENT_SUPPORT = 0.9
# A Moon filling its frame (the client's crops): a circle whose radius is
# 0.3 of the frame's shorter side or more (_LARGE), whose limb runs round
# a crescent's share of it at least (_CRESCENT_COVERAGE), its region's hull
# along the circle (_CRESCENT_SUPPORT) and its ring falling most of the
# way to the sky (_STANDS_OUT). Its score undersells it on two counts: a
# thin crescent exposed for the scene has a dim limb (grey 75-85) measured
# against a crater of 185-200 on the same Moon, and horns too faint to
# count as limb (phase 125-135: scores 0.0074-0.0085 against the floor of
# 0.01, limbs round 0.33-0.40 of their circles, support 1.0, contrast
# 0.9-0.96); and a bright crater inside a half Moon outscored it more than twice (0.0745
# against 0.0336, 0.0611 against 0.0299), so the Moon was no container of
# it. Such a circle's score counts up to _FILLING_GAIN times, to the floor
# at most (a circle above the floor keeps its score: among the circles of
# one object the best-scoring stays the answer), and as a container it
# counts that many times. Its limb steps down sharply where it is seen:
# the step round the circle over its coverage, 0.29 and up on the 881
# such circles of true Moons in the generated phase set's seeds 0-4 (a
# twentieth under 0.52), while a twilight sky brightening towards a
# skyline, its circle a Moon's twice the size, steps 0.14-0.16 (scene
# 161 of bench_detect.py).
_FILLING_GAIN = 2.0
_FILLING_STEP = 0.25
# A disk with a sharp limb stands out from a little less: an over-exposed
# Moon in its halo, or a crescent, whose ring falls 0.6-0.8 of the way to the
# sky (565 of 2238 Moon circles on the phone and clipped sets). The limb
# tells it from the glares of stars, which fall as far but step 0.06-0.08
# (Moons there: 0.11 and up, a tenth under 0.25); a blown-out lamp has as
# sharp a limb, so only circles whose ring falls less than _SHARP_TWIN of its
# own are no twins of it (the glare circles beside such Moons: 0.63-0.66 of
# theirs; another lamp of the same street beside a lamp: 0.78).
_STANDS_OUT_SHARP = 0.6
_SHARP_STEP = 0.15
_SHARP_TWIN = 0.7
# The quick path's acceptance (see _quick), stricter than the full search's.
# Measured on 600 generated scenes, 240 disks of synthetic pairs and the
# real photos: no accepted circle off by more than 10% of the radius, with
# the step and profile limits well inside the first failures (0.2, 0.48).
_QUICK_OTHERS = 0.1  # other regions above this share of the disk's area must lie in it
_QUICK_SUPPORT = 0.8
_QUICK_COVERAGE = 0.6
_QUICK_STEP = 0.3
_QUICK_FILL = 0.75
_QUICK_SPILL = 0.1
_QUICK_PEAK = 0.05  # the steepest drop within this fraction of the radius
_QUICK_INNER_DROP = 0.35
_QUICK_RANSAC_BATCH = 20  # trials at a time, for an early exit on clean limbs
# What a star or a planet is not: the Moon in any photo worth registering is
# at least this share of the frame's shorter side in radius (the smallest
# labelled real Moon, a thin crescent, is 1.9% and detected at 1.5%; a
# planet's or a star's glare in a phone photo stays under about 1.3%).
_MIN_FRAME_SHARE = 0.013
# Nor what a planet's or a lamp's glare is, seen whole and small: a round
# level of it up to 1.5% of the side, its ring still in the glow (contrast
# 0.33-0.47 on the held-back sets, where 10 of 792 Moon-less photos were
# Moons so). A whole Moon that small stands clear of its sky: the generated
# scenes' whole Moons under 2% have contrast 0.66 and up; the real ones
# are larger (the smallest whole one 2.5%) or crescents.
_POINT_GLARE_SHARE = 0.02
# _search's second look: a turned-down light's reach over its radius (its
# glow), how far from its centre its glass may reach, in radii (an oblong
# lamp's 30 x 10 px glass round circles of 7-11 px), and how far below the
# frame's range the range outside the lights must be to be worth it.
_LIGHT_REACH = 2.0
_LIGHT_GLASS = 3.0
_DIMMER = 0.7
# Nor what overflows two opposite sides of its frame, each by more than this
# share of its radius: a Moon larger than the photo, which neither a phone
# photo nor the client's crop (clipped at one side of the photo at most)
# shows. A sky lit by a city above silhouettes gave such circles, 0.11-0.27
# of the radius past the sides; no labelled Moon of any set comes within
# 0.13 of its radius of both sides.
_OVERFLOW = 0.05
# A point source's whole disk (doubted "small") keeps the looser circles
# round it from being the Moon: a circle with such a disk this share of
# its radius or more, centred within the rest, is a level of its glare:
# three lamp globes with no post were answered as Moons by such circles,
# 12-13 working px round the globe's own outline. The Moons lost with them
# are 1.3-1.8% of the short side in radius, under half the smallest a
# phone photo of the Moon shows.
_POINT_CORE = 0.8
# What the Sun's glare is: a blown-out disk in a daylight sky. At night, and
# at dusk with the exposure set by the Moon, the sky stays far darker.
# The daylight is the frame's upper quartile outside the disk, or that of
# the part above its centre when brighter: roofs or hills over the frame's
# lower half leave only the darker sky at the top to the first (built
# scenes of the Sun behind a roof, 8 of 24 taken for Moons so; no Moon of
# any cached set changed). That part must be a fifth of the frame at least:
# beside a blown-out Moon that fills a crop in its halo, the corners read
# 164 where the frame's quartile read 159 (a generated scene, lost so).
_SKY_ABOVE_SHARE = 0.2
# Blown out all over, not only at the lit limb: a day Moon's light adds to
# the sky's, so its limb can clip while its maria and terminator keep the
# disk's median down (day Moons of a second, independently written scene
# generator: median 136-219 inside 0.8 r, limb 220-255; the Suns' glare
# 220-255). A circle of the Sun's glare round, not through, its blown-out
# core has a soft rim (step 0.05-0.11): it stays the Sun's.
_DAYLIGHT_SKY = 160.0
# Nor is a disk blown out all over the Sun when it shows a surface: its
# fine structure (see _surface) spreads at least _SUN_FLAT of its height
# above the sky round it, that height taken as _SUN_MIN_HEIGHT at least
# (the circle round a Sun's rim, 38 grey levels above a white sky, read
# the blur of that rim as 0.032 of 40; the day Moons stand 42-87 above
# their skies, their surfaces spreading 1.5-17 grey levels). Measured on
# the blown-out (median 220 and up), sharp-rimmed circles of daylight
# scenes: the Moons' 0.008-0.40 (median 0.07); the Suns' disks (median
# 250 and up) under 0.03 but for one small circle (0.043); circles of
# other things (a Sun's glare outline, lamps, windows) read 0.03-0.2 as
# often as not. Those the doubts after this one refuse: no Moon-less
# scene of any set was accepted for it.
_SUN_FLAT = 0.03
_SUN_MIN_HEIGHT = 50.0
# The surface is read within this share of the radius: within 0.8 r a
# loose circle round a small Sun (a tenth larger than its disk) read its
# own rim's blur as a surface (a second generator's Sun 19 px across in a
# 12 Mpx frame: 0.056 within 0.8 r, 0.015 within 0.6 r).
_SUN_INNER = 0.6
# ...and on the darkest channel too, the sky round the disk taken from the
# ring out to this many radii (see _least_channel_surface).
_LEAST_CHANNEL_REACH = 1.4
# Nor is it the Sun when a part of it is unlit: the Sun has no phase, a day
# Moon's unlit side shows the sky's own light (see _shows_phase). The fifth
# of the disk (within 0.9 r) below _PHASE_LIT of its height above the sky
# round it, its darkest twentieth no more than _PHASE_DARKER of that height
# below that sky: a roof or a hill in front of a setting Sun is far darker
# than the sky, and so is a branch.
_PHASE_SHARE = 20.0  # percentile
_PHASE_LIT = 0.5
_PHASE_FLOOR_SHARE = 5.0  # percentile
_PHASE_DARKER = 0.5
# Nor is a circle of weak step the Sun's glare when it is a crescent's: a
# step averaged all round the rim is weak when most of the rim is unlit, and
# weaker still in a day sky over black roofs, whose darkness sets the range
# it is measured on. A limb round a crescent's share of the circle at least
# (_CRESCENT_COVERAGE), stepping on average _LIT_STEP of the range where it
# is lit (the step over the coverage), with the rest of the disk unlit (see
# _shows_phase). Built day crescents low over roofs and the second
# generator's day crescents read 0.23-0.43; the Moon-less circles, blown
# out in a day sky, that show a "phase" with such a limb (a circle round
# the Sun's disk and glare, off its centre; a lamp's head) 0.10-0.12, and
# those with less of a limb (circles of the sky's gradient) stay the Sun's.
# And a crescent's lit region runs along its limb: its outline's convex
# part lies on the circle (_LIT_SUPPORT of it; the crescents 0.91-1.0). A
# circle three times the Sun's size through one side of its disk read
# 0.74 (second generator seed 5011, made after the rule and taken for a
# Moon without this bound).
_LIT_STEP = 0.18
_LIT_SUPPORT = 0.85
_BLOWN_OUT = 220.0
# What the Sun's lens ghosts are: pale disks in a bright sky beside a far
# larger blown-out glare. At night a lamp's core is about a Moon's size.
_SUN_SKY = 120.0
_SUN_CORE = 250.0
_SUN_SIZE = 1.5  # the glare's core radius over the disk's, at least
# A circle in a day sky holding a whole disk doubted as the Sun, at most
# this share of its radius, is a level of the Sun's glare: the glare's fall
# inside it reads as a Moon's unlit part (the second generator's 94051: 40
# px round a Sun of 32; 50071 on the pipeline's copy: 100 round 28; 93111).
# Below 1, so that a blown-out day Moon doubted as the Sun at one level
# takes no circle through its own limb at the next with it. At 0.85 no
# Moon of the cached sets was lost.
_SUN_LOOSE = 0.85
# A Moon cut by the frame shows little of its limb: a circle through the
# limb and a gibbous terminator, or through a crescent's inner edge, holds
# more of its level's outline on it (coverage 0.49-0.61 against the true
# circle's 0.32-0.36) and outscored it, 19-31% small. The limb is a step,
# the terminator a soft fall: so a larger circle of the same object, cut by
# the frame, round the best-scoring one, stands for the object when its
# limb is _SHARPER times as sharp (_limb_sharpness: those true circles
# 0.90-1.60 against 0.67-0.89) and it scores _SHARPER_SHARE of it or more
# (0.48-0.76 there) and a Moon's score itself. A halo's circle round a
# disk is softer, never sharper. Only circles cut by the frame: taken for
# whole ones too, two of the twelve real Moon photos were lost (img08,
# img10). Measured on the second generator's scenes (shared maps): the
# 550 Moons of seeds 97000-98099, 515 -> 520 found; seeds 90000-90799,
# Moons 377 -> 380 of 400, Moon-less scenes 372 of 400 refused either way;
# bench_detect's sets, one edge-clipped phone crescent more, nothing else
# changed. In registration, 7-9 more of the 113 Moons cut by the frame
# registered per algorithm (README, "Moon detection").
_SHARPER = 1.25
_SHARPER_SHARE = 0.4
_SHARPER_LARGER = 1.1  # of the radius, at least: a larger circle, not the same one
# A piece of a crescent or half Moon cut by the frame and the Moon's circle
# round it (see _cut_disk_round). Measured on the pipeline's search over
# 1,942 cached scenes: the pieces answered cover 0.22-0.31 of their circle
# (one 0.40), the Moons' circles 1.46-4 times their size, their limbs
# 0.10-0.21 of the circle, standing out of the sky 0.77-1.0 there and 0.60
# in a fresh twilight scene (second generator 74148): the floor is 0.5, as
# no answer on the cached scenes changed between 0.4 and 0.75.
_PIECE_COVERAGE = 0.35
_PIECE_LARGER = 1.4
_CUT_DISK_COVERAGE = 0.1
_CUT_DISK_CONTRAST = 0.5
_CUT_DISK_RING = 0.05
# Where a circle has no limb, a Moon's inside and outside are both its sky
# (the dark side at a phase, or what hides the disk: a roof, a tree); a
# circle fitted to a treeline under a twilight sky has the open sky, far
# brighter than what lies past its limb, inside and out there. Its level
# past the open part (a quarter at least of the circle seen in frame) over
# the limb's height above what lies past it: such circles 0.49-0.95, the
# Moons answered on the cached sets 0.14 at most. And what lies past the
# limb is the frame's darkest (silhouettes: up to 0.27 of the way from the
# frame's floor to the open sky), not the sky itself, as it is past a
# crescent's limb in a sky brightening towards the horizon (0.44, its open
# sky there the sky past the terminator). The limb must be crossed in two
# of the 48 directions at least: a circle the frame's size over a treeline
# (second generator 73147: radius 1088 in a 1882 px frame, its sides off
# the frame) crosses it in two, the crowns' gaps and the frame taking the
# rest; three were asked before (open sky 0.33, the treeline 0). Over
# 1,942 cached scenes nothing else changed.
_OPEN_SHARE = 0.25
_OPEN_LIMB = 2
_OPEN_SKY = 0.3
_PAST_LIMB_DARK = 1.0 / 3.0
# What a glare is: a circle of equal brightness round a far smaller, compact,
# concentric bright core (a planet, a star, a lamp), the light falling all the
# way out from it. The Moon's brightest pixels fill its disk (blown out) or
# lie scattered over it (highlands, crater rims).
_MAX_BRIGHT_BEYOND = 0.3  # directions with the disk's brightness beyond it, at most (see _bright_beyond)
_GLARE_CORE = 0.45  # the core's radius over the circle's, at most
_GLARE_FALL = 0.3  # how far the rim falls from the core towards the sky, at least
# A planet's bloom in a twilight sky is too wide to be such a core, but its
# levels' circles, brighter ones inside darker ones, shrink from 21 to 8
# working px across six levels (see _nested_in_glare).
_GLARE_NESTED = 0.7
# What a lamp's or the Sun's glare is not: a disk. Thresholded, a glare gives
# circles too, but its light falls smoothly through them, while the Moon's
# limb is a step a few pixels wide, whatever the halo beyond it (see
# _limb_sharpness). Measured: lamp and Sun glares 0.03-0.11, generated
# phone Moons 0.17 and up (2% under 0.34), the blurred, haloed real ones 0.19.
_MIN_SHARPNESS = 0.13
_SHARP_BAND = 2.5  # working pixels either side of the limb: the step's own width
# When 0.4 r beyond the limb is not in the frame, the profile is read over
# this share of the radius, against a higher floor. Measured there: close
# and corner-clipped Moon crops 0.40-1.6, the Sun's glare filling a photo 0.22.
_SHORT_REACH = 0.12
_SHORT_REACHES = (_SHORT_REACH, 0.06)
_SHORT_MIN_SHARPNESS = 0.3
# What the Moon is: brighter than its sky. The frame's bright quarter outside
# the disk (sky, or the tops of silhouettes), or that of the sky just around
# it, stays this share of the range, from the darkest level to the lit limb,
# below the limb; a patch of sky between tree crowns or roofs, a circle
# fitted to its outline, is as bright as the sky above. Measured on the
# frame's quarter: such patches 0.1-0.26, generated phone Moons 0.56 and up,
# the real ones 0.58 and up (see _outshines). The range's floor is the
# sky's, unless all of the ring round the disk is brighter: a day Moon in a
# blue sky over black roofs stands 82-92 grey levels above its sky, under
# 0.4 of its height above the roofs, but far more of it above its sky.
# Measured against the brightest of the ring (a day Moon low over roofs
# that reach into the ring), the floor is the ring's lower quartile when
# that is higher: a day crescent of the second generator, 251 inside, its
# ring 23 (roofs), 163 (lower quartile), 184 (brightest), stands 67 above
# that brightest, 0.76 of its height above the quartile. A patch of
# twilight sky between trees is dimmer than the brightest of its ring.
_MIN_OUTSHINE = 0.4
_RING_FLOOR_SHARE = 25.0  # percentile
# ... and the ring it is measured on brighter than the sky's floor by half
# the way up to the open sky at least (the sky patches between silhouettes
# taken for Moons: ring 24-32, sky floor 5-8, open sky 69-89), or half of
# it (the median) at least this share of the open sky's brightness: a
# twilight Moon high in the dark blue sky, the horizon far brighter, has
# its ring at 0.41-0.8 of it but barely above the floor the dark sky sets;
# the silhouettes round those patches, 0.04-0.26.
_RING_SKY = 0.5
_RING_OPEN_SKY = 0.4
# What a disk large in its frame is: a limb round most of its lit side.
# Measured on such circles: true ones (crops filling the frame, cut by its
# edge) cover 0.41 of the circumference and up; circles fitted to the sky's
# edge above roofs and trees, or to a glow's, 0.18-0.32. A small crescent
# cut by the frame may show less of its limb than that.
_MIN_COVERAGE = 0.34
_LARGE = 0.3  # of the frame's shorter side, in radius
# And one that large whose limb runs round under half of it (a crescent's)
# has its lit region's hull along that limb, as a crescent's lies within
# its circle: the one such true Moon of the cached sets 0.99; a city's sky
# glow over trees and a glow over roofs, their circles half the frame's
# shorter side in radius, 0.59 and 0.54.
_LARGE_SUPPORT = 0.8
# Any circle whose limb runs round less than this share of its rim (inside
# the frame) fits an arc, not a disk: the end of a lamp's elliptic head, or
# the glow round it, 0.14 there. The Moons found in every cached set (760,
# crescents and disks cut by the frame among them) cover 0.25 and up.
_MIN_ANY_COVERAGE = 0.2
# What a circle fitted along one side of a light is not: a disk (see
# _side_of_a_light). Read in 72 directions from the limb inwards, lit
# half way up from the ring round the circle to its limb, lit from the
# limb when that starts within _SIDE_START r of it; arcs of lit limb up to
# _SIDE_SPAN degrees are judged (a half Moon's is 180), their gaps of up
# to _SIDE_GAP directions closed, and so are directions whose limb is
# darker than the sky beyond by _SIDE_HIDDEN grey levels (or 0.3 of the
# disk's height) or steps down across the circle (from 0.15 r inside to
# _SIDE_BEYOND r) by _SIDE_STEP of that height. Measured: the lamp heads,
# headlight pairs and Sun's glare circles taken for Moons on the second
# generator's scenes reach 0.29-0.70 r in from the limb, 0.16-0.6 r past
# the chord of their arc; crescents and disks cut off by silhouettes stay
# within it. No Moon on any set was lost by find_moon (loose circles
# round a few Moons, never the one chosen, read past it); the pipeline
# lost one blown-out day Moon it had found through the circle of its halo,
# which the disk fills only the top of.
_SIDE_SPAN = 130.0
# Nor is a circle judged whose limb is lit from within over an arc of
# _SIDE_DISK_LIMB degrees or more: that arc is a disk's, and a light lit
# from its limb elsewhere is in front of the disk (a lamp's head at a thick
# crescent's dark limb, its own lit limb 165 degrees: second generator
# 71144). Alone it lost a blown-out Moon over a lamp head (97098, whose
# circles had been "side" for that head and then stood on its post), which
# the head rule of _post_of_a_head (_dark_between) keeps.
_SIDE_DISK_LIMB = 150.0
_SIDE_START = 0.15
_SIDE_PAST_CHORD = 0.15
# ...or _SIDE_PAST_CHORD_UNBENT past it over an arc of at least
# _SIDE_UNBENT_SPAN degrees when the far edge of the light does not bend
# the limb's way (see _far_edge_unbent): a lamp's elliptic head under a
# circle through its upper edge (its lower edge bulges away from that
# circle's limb) reached 0.14 past the chord; the crescents 0.1-0.15 past
# it over short arcs (15-20 degrees, their horns faded).
_SIDE_PAST_CHORD_UNBENT = 0.1
_SIDE_UNBENT_SPAN = 45.0
_SIDE_SHOULDERS = (0.15, 0.85)
# An arc that ends within this many directions of the frame's edge may go
# on off the frame: it is not judged.
_SIDE_NEAR_CUT = 5
_SIDE_GAP = 4  # directions of 5 degrees
_SIDE_HIDDEN = 10.0
_SIDE_BEYOND = 1.08
_SIDE_STEP = 0.15
_SIDE_SAMPLES = 96  # along each radius, at most
# A street lamp's globe is a disk in its own glare, as round and as bright
# as a blown-out Moon; what the Moon never has is a post under it (see
# _on_a_pole). Rows 1.1-3 r below the disk are searched for a dark band
# within 0.5 r of its centre, against the sky 0.1-0.3 r either side: in at
# least 4 rows, one of the first 3, and 0.8 of those where the sky could
# show it, upright within 4 degrees, with at most 2 other dents as deep in
# each row; rows 1.1-2 r above must not show it within 0.35 r of its line.
# Measured on three sets of generated phone photos: 6 of the 8 lamps taken
# for the Moon are refused, no Moon lost (README, "Moon detection").
# The band must be _POST_DEPTH of the disk's height above the sky darker
# than the sky beside it (5 grey levels and 4 times the noise at least):
# 0.03 asked 6.6 levels of a lamp at 233 over a sky at 12, more than its
# post showed; at 0.02 two more lamps are refused and a Moon is found
# whose nearest lamp's post runs on above it, no Moon lost on any set.
_POST_BELOW = (1.1, 3.0, 20)
_POST_ABOVE = (1.1, 2.0, 8)
_POST_ROWS = 4
# The rows of that band the frame must hold for a post to be judged at all
# (0.5 r under the disk): a Moon low over the frame's edge, in the glow of
# cloud under it, left 4 rows (0.3 r), dents of that glow read as a post.
_POST_BAND = 6
_POST_SHARE = 0.8
_POST_FLANKS = (0.1, 0.2, 0.3)
_POST_OFFSET = 0.5
_POST_SLANT = 0.35
_POST_OTHERS = 2  # other dents in a row beside the post, at most
_POST_TILT = 0.07  # across over down: 4 degrees
_POST_DEPTH = 0.02
# A post may end at a lamp of its own under the disk: a street lamp's head
# just under the Moon or in front of its lower limb (a second generator's
# scene: a head of radius 0.08 r, 0.78 r below the centre, 70 grey levels
# brighter than the disk). Small, blown out (_FLAT_BRIGHT: a sodium head
# under the Moon read under 230, second generator alt_0/38), brighter than
# the disk (a lamp's own globe is the brightest thing on its post) or,
# blown out itself (_BLOWN_OUT) but not that much brighter than the disk
# (a white day Moon over a white head, second generator 97098), apart from
# it, the way to it running from the lit disk into something darker
# (_dark_between: a circle through the top of a blown-out elliptic head
# had the head's own middle below it, second generator 5023), and below
# its centre: the globe's core and levels of its glare are round its
# centre.
# From 0.5 r: a head in front of the lower limb merges with the bright
# surface beside it into a blob that reads higher than the head, and the
# head pulls the disk's circle down (tests' scene 0, 0.58 r; no change on
# any cached set from 0.6).
_HEAD_SIZE = 0.4
_HEAD_BRIGHTER = 30.0
_HEAD_BELOW = (0.5, 1.3)
# A Moon behind a bare tree has the trunk under it for a post; its twigs
# crossing the disk are what no lamp shows (_post_crosses_disk): 3 rows of
# 13 with a band half the disk's height deep, off the trunk's line.
_POST_THROUGH = 3
_POST_THROUGH_DEPTH = 0.5
# Nor is a disk a lamp when its post runs dark across the disk's upper half
# (in 3 of the 6 rows above its centre): the Moon is behind the post, its
# lamp higher up. A post lit by its globe, lighter than the night sky, is a
# post too (the levels turned over), if it shows alone in each of the first
# _POST_ROWS rows under the disk. See _on_a_pole.
_POST_IN_FRONT = 3


@dataclass(frozen=True)
class Circle:
    """A disk in pixel coordinates: centre (x, y) and radius."""

    x: float
    y: float
    radius: float

    def as_dict(self):
        return {"x": round(float(self.x), 1), "y": round(float(self.y), 1), "radius": round(float(self.radius), 1)}

    def scaled(self, factor):
        return Circle(self.x * factor, self.y * factor, self.radius * factor)


@dataclass
class _Candidate:
    x: float
    y: float
    r: float
    coverage: float  # fraction of the full circle that the fitted limb covers
    step: float  # mean drop across the rim, all the way round, 0 to 1 of the range
    inside: float  # brightness just inside the lit limb
    outside: float  # brightness of the ring around the disk
    level: float  # the threshold that made it
    support: float  # fraction of the region's hull points near the circle
    bright: float  # brightness inside the limb, 0 at the sky, 1 at the brightest
    noise: float = 0.0  # the image's noise level, in grey levels
    score: float = 0.0
    disk_score: float = 0.0  # the score before the doubts, for moon_candidates' order
    rival_score: float = 0.0  # the score before the plausibility test, for the look-alike rule
    rank: float = 0.0  # the score weighed by the contrast with the ring around, for the order
    in_frame: float = 1.0  # fraction of the circle's rim inside the frame
    on_post: bool = False  # doubted as a lamp standing on its post (_on_a_pole)
    glare: bool = False  # doubted as a level of a glare round a small core (_is_glare)
    point: bool = False  # doubted as a point source's whole disk ("small")
    filling: bool = False  # a Moon filling its frame to every measure (_fills_frame)
    joined: bool = False  # fitted to a region joined across dark gaps (_Joiner)
    sun: bool = False  # doubted as the Sun ("sun"), its whole disk
    contrast: float = 0.0  # see _contrast
    rect_fill: float = 0.0  # the region's share of its smallest enclosing rectangle (_MAX_RECT_FILL)
    spread: float = None  # _spread's reading, kept: the look-alike tests ask it of the same circles again
    least_channel: tuple = None  # _least_channel's reading, kept: the Sun and lamp-globe tests both ask it
    doubt: str = None  # what _doubt said of it, when asked


def find_moon(image):
    """The Moon's disk in a BGR or grey uint8 image, in that image's pixels.

    Raises NoMoonError when nothing in the picture is convincingly the Moon.
    """
    return find_moon_how(image)[0]


def find_moon_how(image):
    """find_moon's circle, and whether the quick path accepted it (a bright
    disk alone on a darker sky, its profile steepest at the rim: no glare)."""
    if not _usable(image):
        raise NoMoonError(_NO_MOON)
    grey, factor = _working_copy(image)
    scene = _prepare(grey, image, factor)
    best, quick = None, False
    if scene is not None:
        best = _quick(grey, scene)
        if best is None:
            # Dim maria or a flattened photo can leave the disk short of its
            # circle at Otsu's level: once more, halfway down to the sky.
            best = _quick(grey, scene, lower=True)
        quick = best is not None
        if best is None:
            best = _search(grey, scene)[0]
    if best is None:
        raise NoMoonError(_NO_MOON)
    return _to_image(best, factor), quick


def moon_candidates(image, limit=3):
    """Up to ``limit`` disks that may be the Moon, most likely first: what
    find_moon's full search would answer (when it answers), then the disks
    it passed over, for a caller that can test each one (the registration
    pipeline matches them against the render). Besides the runners-up these
    are disks only doubted: one of a family of look-alikes (a Moon among
    street lamps its own size), or taken for a glare, a gap in the sky or a
    lamp. Never raises; an empty list when the image has no disk at all."""
    if not _usable(image):
        return []
    grey, factor = _working_copy(image)
    scene = _prepare(grey, image, factor)
    if scene is None:
        return []
    best, others = _search(grey, scene)
    return [_to_image(c, factor) for c in ([best] if best is not None else []) + others][:limit]


def _usable(image):
    """Whether ``image`` is an array of a picture at least 8 px each way."""
    return image is not None and getattr(image, "ndim", 0) in (2, 3) and image.size > 0 and min(image.shape[:2]) >= 8


def _working_copy(image):
    """(8-bit luminance at most MAX_WORK_PIXELS large, its scale)."""
    grey = _brightness(image)
    height, width = grey.shape
    factor = min(1.0, (MAX_WORK_PIXELS / float(height * width)) ** 0.5)
    if factor < 1.0:
        size = (max(8, round(width * factor)), max(8, round(height * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        factor = grey.shape[1] / float(width)
    return grey, factor


def _to_image(c, factor):
    # Pixel centres: (x + 0.5) / factor - 0.5 maps work to original pixels.
    return Circle((c.x + 0.5) / factor - 0.5, (c.y + 0.5) / factor - 0.5, c.r / factor)


def limb_is_sharp(image, circle):
    """Whether ``circle`` (in ``image``'s pixels) has a Moon's limb: a step a
    few pixels wide, not the smooth fall of a glare (see _limb_sharpness).
    For a circle found on a much smaller copy, where every glare is a step.
    ``image`` is a pyramid level (already an area average: no blur needed)."""
    grey = _brightness(image)
    sky, top = float(np.percentile(grey[::4, ::4], 5)), float(grey.max())
    # Only the pixels the profiles reach (0.4 r beyond the limb, and the
    # 0.9 r ring inside) are needed: crop to them, keeping the coordinates.
    reach = 1.4 * circle.radius + 4.0
    height, width = grey.shape
    x0, y0 = max(0, int(circle.x - reach)), max(0, int(circle.y - reach))
    x1, y1 = min(width, int(circle.x + reach) + 2), min(height, int(circle.y + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return False
    patch = grey[y0:y1, x0:x1]
    scene = _Scene(patch, patch.astype(np.float32), sky, top, 0.0)
    cx, cy, r = circle.x - x0, circle.y - y0, circle.radius
    # Lit where the disk just inside its limb is halfway up from the sky to
    # its own bright side (not the frame's brightest: that may be a lamp).
    theta = np.linspace(-np.pi, np.pi, 72, endpoint=False)
    inner = _sample(scene.smooth_f, cx + 0.9 * r * np.cos(theta), cy + 0.9 * r * np.sin(theta))
    inner = inner[np.isfinite(inner)]
    if len(inner) < 4:
        return False
    level = sky + 0.5 * (float(np.percentile(inner, 75)) - sky)
    c = _Candidate(cx, cy, r, 0, 0, 0, 0, level, 0, 0)
    sharpness, floor = _sharpness_and_floor(scene, c)
    return bool(np.isfinite(sharpness) and sharpness >= floor)


def _brightness(image):
    """8-bit luminance of an image of any layout: grey, or 1 to 4 channels
    (BGR, BGRA; two channels are grey and alpha), of any integer, boolean or
    float depth (floats up to 1 are taken as 0-1, NaN as black)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (1, 2):
        image = image[:, :, 0]
    elif image.ndim == 3:
        image = image[:, :, :3]
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    # Luminance, not a single channel: an orange Moon on a blue sky is bright
    # in red and green but dark in blue, and a blue sky is bright in blue.
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)


def _to_uint8(image):
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        scale = 255.0 / float(info.max) if info.max > 255 else 1.0
        return np.clip(image.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    values = np.nan_to_num(image.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(values, 0, 255).astype(np.uint8)


@dataclass
class _Scene:
    """What every detection path measures first on the working copy."""

    smooth: np.ndarray  # lightly blurred grey, uint8
    smooth_f: np.ndarray  # the same as float32, for sampling
    sky: float
    top: float
    noise: float
    grid: tuple = None  # for _sky_around: step, the sparse grid and its histogram
    core: tuple = None  # for _beside_sun: the largest blown-out region's (x, y, radius)
    lights: list = None  # the full search's candidates, for _post_of_a_head
    colour: tuple = None  # for _least_channel_surface: the image as given, and the working copy's scale


def _prepare(grey, image=None, factor=1.0):
    """The blurred image, the sky's and the brightest level and the noise;
    None for a blank frame. ``image`` (of which ``grey`` is the working copy
    at ``factor``) is kept for the one doubt that reads its channels."""
    smooth = cv2.GaussianBlur(grey, (0, 0), 1.0)
    sky = float(np.percentile(smooth[::4, ::4], 5))
    top = float(smooth.max())
    if top - sky < _MIN_RANGE:
        return None
    # Sensor noise, from differences of raw neighbours (robust: the Moon's
    # edge is a tiny fraction of them), then as much as survives the blur.
    noise = _blurred_noise(np.abs(np.diff(grey[::2].astype(np.float32), axis=1)))
    colour = (image, factor) if image is not None and image.ndim == 3 and image.shape[2] >= 3 else None
    return _Scene(smooth, smooth.astype(np.float32), sky, top, noise, colour=colour)


def _search(grey, scene):
    """_choose over every candidate; when nothing is the Moon and the
    frame's brightest pixels lie in disks that were plausible but turned
    down (lamps, a planet), once more with the range above the sky taken
    from the brightest level outside them. A dim Moon beside brighter
    lights is measured against them otherwise: its brightness, which
    counts squared, and its step fall below the floor however clean its
    limb. The second look answers only disks clear of those lights: they
    outscore the lowered floor themselves."""
    best, others = _choose(_candidates(grey, scene), scene)
    if best is not None:
        return best, others
    dimmer, lights = _without_lights(scene)
    if dimmer is None:
        return best, others
    again, more = _choose(_candidates(grey, dimmer), dimmer)
    if again is None or _touches(again, lights):
        return best, others
    return again, [c for c in more if not _touches(c, lights)]


def _without_lights(scene):
    """(The scene with its range measured outside every disk turned down,
    the mask of those disks), or (None, None) when that range is hardly
    below the frame's (_DIMMER) or too small to hold a Moon."""
    lights = [c for c in scene.lights or () if c.disk_score >= _MIN_SCORE]
    if not lights:
        return None, None
    height, width = scene.smooth.shape
    mask = np.zeros((height, width), np.uint8)
    for c in lights:
        # The light's region at its level (a lamp's oblong glass reaches
        # past its circle) within _LIGHT_GLASS radii of its centre, widened
        # by its glow (a distance transform: a dilation whose cost does not
        # grow with the reach), all in the box that can hold it.
        cx, cy = min(max(round(c.x), 0), width - 1), min(max(round(c.y), 0), height - 1)
        glass, reach = round(_LIGHT_GLASS * c.r) + 1, round(_LIGHT_REACH * c.r + 2)
        x0, y0 = max(0, cx - glass - reach), max(0, cy - glass - reach)
        x1, y1 = min(width, cx + glass + reach + 1), min(height, cy + glass + reach + 1)
        region = np.zeros((y1 - y0, x1 - x0), np.uint8)
        gx0, gy0 = max(0, cx - glass) - x0, max(0, cy - glass) - y0
        gx1, gy1 = min(width, cx + glass + 1) - x0, min(height, cy + glass + 1) - y0
        above = (scene.smooth[y0 + gy0 : y0 + gy1, x0 + gx0 : x0 + gx1] > c.level).astype(np.uint8)
        _, labels = cv2.connectedComponents(above)
        label = labels[cy - y0 - gy0, cx - x0 - gx0]
        if label:
            region[gy0:gy1, gx0:gx1] = labels == label
        cv2.circle(region, (cx - x0, cy - y0), round(c.r), 1, -1)
        mask[y0:y1, x0:x1] |= cv2.distanceTransform(1 - region, cv2.DIST_L2, 5) <= reach
    outside = scene.smooth[mask == 0]
    if outside.size == 0:
        return None, None
    top = float(outside.max())
    if top - scene.sky < _MIN_RANGE or top - scene.sky > _DIMMER * (scene.top - scene.sky):
        return None, None
    return _Scene(scene.smooth, scene.smooth_f, scene.sky, top, scene.noise, colour=scene.colour), mask


def _touches(c, mask):
    """Whether a circle reaches into the mask's pixels."""
    height, width = mask.shape
    x0, y0 = max(0, int(c.x - c.r) - 1), max(0, int(c.y - c.r) - 1)
    x1, y1 = min(width, int(c.x + c.r) + 2), min(height, int(c.y + c.r) + 2)
    if x0 >= x1 or y0 >= y1:
        return False
    disk = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.circle(disk, (round(c.x) - x0, round(c.y) - y0), round(c.r), 1, -1)
    return bool(np.any(disk & mask[y0:y1, x0:x1]))


def _blurred_noise(steps):
    """The noise left after the 1 px blur every reading here works on, from
    the absolute differences of raw neighbours (``steps``): a robust spread
    of one pixel's noise, as much of it as survives the blur."""
    return 1.4826 * float(np.median(steps)) / np.sqrt(2.0) / (2.0 * np.sqrt(np.pi))


def _quick(grey, scene, lower=False):
    """The common case in one pass: a bright disk alone on a darker sky (a
    render, most cropped photos). One Otsu threshold, the largest region's
    hull limb, one RANSAC circle, the full detector's measurements, and
    stricter acceptance: the region (with any pieces that branches cut off)
    must stand alone and fill its circle,
    the limb must follow the circle most of the way round and step down
    sharply at the circle itself, not inside it (a glow). None sends the
    image to the full search."""
    height, width = grey.shape
    span = scene.top - scene.sky
    otsu, _ = cv2.threshold(scene.smooth, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    if lower:
        otsu = scene.sky + 0.5 * (otsu - scene.sky)
    level = float(np.clip(otsu, scene.sky + _LEVELS[0] * span, scene.sky + _LEVELS[-1] * span))
    mask = (scene.smooth > level).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    areas = np.array([cv2.contourArea(c) for c in contours])
    order = np.argsort(-areas)
    area = float(areas[order[0]])
    if area < np.pi * _MIN_RADIUS_FOUND**2:
        return None
    outline = contours[order[0]].reshape(-1, 2)
    # Other regions of some size are pieces of the disk that branches cut
    # off, or rivals (coins, lamps, lit cloud): they are judged once the
    # circle is known.
    others = [contours[i].reshape(-1, 2) for i in order[1:] if areas[i] > _QUICK_OTHERS * area]
    limb, _ = _limb_points(outline, width, height)
    if len(limb) < 12:
        return None
    max_radius = 0.75 * max(width, height)
    # RANSAC, not a fit to the whole limb: branches across the limb leave
    # hull points inside the circle.
    fit = _ransac(limb, max_radius, batch=_QUICK_RANSAC_BATCH)
    if fit is None:
        return None
    x, y, r, _ = fit
    edge = np.concatenate([c[:: max(1, len(c) // 400)] for c in [outline] + others]).astype(np.float64)
    edge = edge[_off_border(edge, width, height)]
    x, y, r, arc = _collect(x, y, r, edge, scene.smooth_f, level, max_radius)
    if any(np.hypot(c[:, 0] - x, c[:, 1] - y).max() > (1.0 + _QUICK_SPILL) * r for c in others):
        return None
    if arc is None:
        return None
    c = _evaluate(x, y, r, limb, arc, scene.smooth_f, level, scene.sky, span, width, height)
    if c is None:
        return None
    c.noise = scene.noise
    c.score = c.step * c.bright**2 * c.coverage * c.support
    # The region against its circle, both clipped to the frame.
    bx, by, bw, bh = cv2.boundingRect(np.concatenate([outline] + others))
    x0, y0 = max(0, min(bx, int(x - r) - 1)), max(0, min(by, int(y - r) - 1))
    x1, y1 = min(width, max(bx + bw, int(x + r) + 2)), min(height, max(by + bh, int(y + r) + 2))
    region = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.drawContours(region, [c - (x0, y0) for c in [outline] + others], -1, 1, thickness=-1)
    disk = np.zeros_like(region)
    cv2.circle(disk, (round((x - x0) * 16), round((y - y0) * 16)), round(r * 16), 1, -1, shift=4)
    inside = float(np.count_nonzero(disk)) or 1.0
    fill = np.count_nonzero(region & disk) / inside
    spill = np.count_nonzero(region & (1 - disk)) / inside
    if (
        c.inside - c.outside < _min_contrast(scene, c)
        or c.score < _MIN_SCORE
        or c.support < _QUICK_SUPPORT
        or c.coverage < _QUICK_COVERAGE
        or c.step < _QUICK_STEP
        or fill < _QUICK_FILL
        or spill > _QUICK_SPILL
    ):
        return None
    # A glow thresholded with its disk is round too, but the profile
    # through it drops fastest at the disk's rim, well inside the circle.
    peak, inner_drop = _edge_profile(scene.smooth_f, x, y, r, level)
    if not (abs(peak - 1.0) <= _QUICK_PEAK and inner_drop <= _QUICK_INNER_DROP):
        return None
    if not _plausible(c, scene):
        return None
    return c


def _plausible(c, scene):
    """Whether a candidate disk can be the Moon rather than a point source
    (too small for its frame) or the Sun (blown out in a daylight sky)."""
    return _doubt(c, scene) is None


def _doubt(c, scene):
    """Why a candidate disk is not the Moon, or None: "small" (a point
    source, too small for its frame), "sun" (blown out in a daylight sky),
    "open" (the frame as bright beyond it), "glare" (a level of a glare
    round a small core), "lamp" (on its post, or a coloured globe),
    "window" (its region a rectangle) or, for what is no disk at all and
    so no look-alike either, "dim" (no brighter than the sky around),
    "soft" (a glare's level, with no limb), "side" (fitted along one side
    of a light that reaches far into it), "gap" (a patch of sky against
    silhouettes, the same sky running on past the rest of it) or "frame"
    (larger than its frame: see _OVERFLOW)."""
    height, width = scene.smooth.shape
    if c.r < _MIN_FRAME_SHARE * min(width, height):
        return "small"
    if _overflows(c, width, height):
        return "frame"
    if (
        _point_like(scene, c)
        and c.coverage >= _WHOLE_COVERAGE
        and _contrast(c, scene) < _STANDS_OUT_SHARP
    ):
        return "small"
    sky_around = _sky_around(scene, c)
    # A loose circle round a small Sun reads its limb's level below the
    # disk's: the disk blown out all over is the Sun's mark as well.
    limb_blown = c.inside >= _BLOWN_OUT
    disk_blown = _disk_median(scene, c) >= _BLOWN_OUT
    if (
        (limb_blown or disk_blown)
        and max(sky_around, _sky_above(scene, c)) >= _DAYLIGHT_SKY
        and (
            (limb_blown and c.step < _SHARP_STEP and not _lit_crescent(scene, c, sky_around))
            or (
                disk_blown
                and _surface_over(scene, c, sky_around) < _SUN_FLAT
                and not _shows_phase(scene, c, sky_around)
                and _least_channel_surface(scene, c) < _SUN_FLAT
            )
        )
    ):
        return "sun"
    if sky_around >= _SUN_SKY and _beside_sun(scene, c):
        return "sun"
    if _open_past_limb(scene, c):
        return "gap"
    # Before "open": a patch of day sky between roofs or trees is as bright
    # beyond its circle too, but it is sky, no disk, and so no look-alike
    # that could shut out a day Moon beside it.
    if not _outshines(scene, c, sky_around):
        return "dim"
    if _bright_beyond(scene, c) > _MAX_BRIGHT_BEYOND:
        return "open"
    sharpness, floor = _sharpness_and_floor(scene, c)
    if sharpness < floor:
        return "soft"
    if _side_of_a_light(scene, c):
        return "side"
    if _is_glare(scene, c):
        return "glare"
    if _coloured_globe(scene, c) or _on_a_pole(scene, c):
        return "lamp"
    if c.rect_fill > _MAX_RECT_FILL:
        return "window"
    return None


_NOT_A_DISK = ("dim", "soft", "side", "gap", "frame")


def _overflows(c, width, height):
    """Whether the circle reaches past both of two opposite sides of the
    frame (its pixels' outer edges) by more than _OVERFLOW of its radius."""
    reach = c.r * (1.0 - _OVERFLOW)
    return (c.x + 0.5 < reach and width - (c.x + 0.5) < reach) or (c.y + 0.5 < reach and height - (c.y + 0.5) < reach)


def _outshines(scene, c, sky_around):
    """Whether the lit limb is brighter than the sky, by _MIN_OUTSHINE of the
    range: the sky of the whole frame (its bright quarter, sky_around) or
    all of the sky just around the disk (the brightest of a ring 1.3 to 1.6
    radii out), for a day Moon low in a sky brightening towards the horizon;
    a patch of sky between silhouettes has the open sky right beside it.
    The range runs up from the frame's floor, or from the darkest of that
    ring when all of it is brighter (a day Moon over black roofs); against
    the ring's brightest, from its lower quartile when higher (a day Moon
    low over roofs that reach into the ring). That ring must hold some sky
    (_RING_SKY, _RING_OPEN_SKY): a patch of sky enclosed by silhouettes, as
    bright as the open sky, is ringed by them alone."""
    ring = _rings(scene.smooth_f, c.x, c.y, c.r, (1.3, 1.6), 48).ravel()
    ring = ring[np.isfinite(ring)]
    floor = max(scene.sky, float(ring.min())) if len(ring) >= 12 else scene.sky
    need = _MIN_OUTSHINE * (c.inside - floor)
    if c.inside - sky_around >= need:
        return True
    if len(ring) < 12:
        return False
    if (
        float(ring.max()) < scene.sky + _RING_SKY * (sky_around - scene.sky)
        and float(np.median(ring)) < _RING_OPEN_SKY * sky_around
    ):
        return False
    ring_floor = max(floor, float(np.percentile(ring, _RING_FLOOR_SHARE)))
    return c.inside - float(ring.max()) >= _MIN_OUTSHINE * (c.inside - ring_floor)


def _sharpness_and_floor(scene, c):
    """The limb's sharpness (see _limb_sharpness) and the floor it must
    reach. A disk filling its frame (a crop clipped at the photo's edge, a
    close crop) leaves no 0.4 r of sky beyond its limb: the step is then
    read over the band a crop's padding (0.15 r) leaves, where a glare falls
    less far and so must step more sharply; a circle hugging the frame's
    edges, over half that (the outline of the Sun's glare filling a photo,
    its diameter about the long side, reads 0.05-0.06 there; a limb steps from
    0.3 up). Infinite (not judged) when not even that is in the frame."""
    sharpness = _limb_sharpness(scene, c)
    if np.isfinite(sharpness):
        return sharpness, _MIN_SHARPNESS
    for reach in _SHORT_REACHES:
        sharpness = _limb_sharpness(scene, c, reach)
        if np.isfinite(sharpness):
            break
    return sharpness, _SHORT_MIN_SHARPNESS


def _limb_sharpness(scene, c, reach=0.4):
    """How much of the fall across the lit limb, from ``reach`` r inside to
    ``reach`` r outside, happens within _SHARP_BAND pixels of its steepest
    point near the circle: near 1 for the Moon's limb (a step blurred by a
    few pixels; more where a halo adds its own fall), a small share for an
    iso-level of a glare. Infinite when no lit direction has that much of
    its profile in the frame."""
    reach = reach * c.r + 3.0
    pitch = 0.5 if c.r < 40 else 1.0
    offsets = np.arange(-reach, reach + 0.5 * pitch, pitch)
    theta = np.linspace(-np.pi, np.pi, 72, endpoint=False)
    radii = c.r + offsets[:, None]
    profile = _sample(scene.smooth_f, (c.x + radii * np.cos(theta)).ravel(), (c.y + radii * np.sin(theta)).ravel())
    profile = profile.reshape(radii.shape[0], -1)
    # Directions whose limb is lit, and in the frame all along.
    lit = np.isfinite(profile).all(axis=0) & (profile[np.searchsorted(offsets, -min(3.0, 0.1 * c.r))] > c.level)
    if lit.sum() < 4:
        return np.inf
    mean = profile[:, lit].mean(axis=1)
    k = max(1, int(round(_SHARP_BAND / pitch)))
    drops = mean[: -2 * k] - mean[2 * k :]
    near = np.abs(offsets[k:-k]) <= 0.12 * c.r + 2.0
    wide = mean[0] - mean[-1]
    if not near.any() or wide <= 0:
        return np.inf
    return float(drops[near].max() / wide)


def _on_a_pole(scene, c):
    """Whether the disk is a lamp on its post: a narrow band darker than the
    sky on both sides of it (or lighter, lit by the globe) runs straight
    down from under the disk, through the glare, and does not go on above
    the disk, as a branch or a wire in front of the Moon would, nor fork
    across it, as a tree's twigs do, nor cross its upper half, as a lamp's
    post in front of the Moon does (a lamp's own post holds its globe from
    below). A lighter band must be narrow (the Moon's reflection on water
    is as wide as the Moon)."""
    height = scene.smooth.shape[0]
    r = c.r
    rows = c.y + r * np.concatenate([np.linspace(*_POST_BELOW), -np.linspace(*_POST_ABOVE)])
    above = rows < c.y
    keep = (rows >= 0) & (rows < height - 1)
    rows, above = rows[keep], above[keep]
    if (~above).sum() < _POST_BAND:
        return False
    count = max(37, int(1.8 * r) + 1) | 1
    offsets = np.linspace(-0.9, 0.9, count) * r
    profile = _sample(
        scene.smooth_f, np.tile(c.x + offsets, len(rows)), np.repeat(rows, count)
    ).reshape(len(rows), count)
    found = _post_under(scene, c, rows, above, offsets, profile)
    if found is None:
        # A post lit by its globe, lighter than a night sky: the same band
        # with the levels turned over. A narrow one only (the flanks are
        # 0.3 r out at most): the Moon's reflection on water is as wide as
        # the Moon.
        found = _post_under(scene, c, rows, above, offsets, -profile, light=True)
    if found is None:
        return False
    line, lean = found
    if _post_of_a_head(scene, c, line, lean):
        return False
    bands = _bands_across_disk(scene, c)
    if bands is None:
        return True
    if _post_crosses_disk(bands, c, line, lean):
        return False
    # The post in front of the disk's upper half: the Moon behind a lamp's
    # post, the lamp higher up (its glare may hide the post above the disk).
    return not _post_in_front(bands, c, line, lean)


def _post_of_a_head(scene, c, line, lean):
    """Whether the post under the disk holds a lamp head of its own there
    (see _HEAD_SIZE): the Moon above a street lamp, not a lamp's globe."""
    for o in scene.lights or ():
        if (
            o.r <= _HEAD_SIZE * c.r
            and _HEAD_BELOW[0] * c.r <= o.y - c.y <= _HEAD_BELOW[1] * c.r
            and abs(o.x - c.x - np.polyval(line, o.y)) <= lean + o.r
            and (
                o.inside >= max(_FLAT_BRIGHT, c.inside + _HEAD_BRIGHTER)
                or (o.inside >= _BLOWN_OUT and _dark_between(scene, c, o))
            )
        ):
            return True
    return False


def _dark_between(scene, c, o):
    """Whether the way from the disk's centre to the rim of ``o`` runs from
    the lit disk into something darker (under half way from the ring round
    the disk to its limb): ``o`` is a light apart from the disk, not a part
    of it. A circle through the top of a blown-out elliptic head has its
    centre in the head's glare and the head's own middle below it: that way
    runs from dark into light only."""
    distance = float(np.hypot(o.x - c.x, o.y - c.y))
    if distance <= o.r:
        return False
    t = np.linspace(0.0, 1.0 - o.r / distance, 32)
    values = _sample(scene.smooth_f, c.x + t * (o.x - c.x), c.y + t * (o.y - c.y))
    level = c.outside + 0.5 * (c.inside - c.outside)
    with np.errstate(invalid="ignore"):
        lit = values >= level
        dark = values < level
    return bool(lit.any() and dark[int(np.argmax(lit)) :].any())


def _post_under(scene, c, rows, above, offsets, profile, light=False):
    """The post under the disk in ``profile`` (rows across it, below and
    above the disk; a band darker than what is either side of it): its
    line (offset from the centre by row, as np.polyfit fits it), how far
    off it still counts as on it. None when no post stands there, or it
    goes on above the disk.
    A ``light`` one (the levels turned over) must stand alone in the first
    _POST_ROWS rows under the disk, and show in each: sky showing between
    silhouettes (branches, roofs) is lighter than they are too."""
    r = c.r
    count = len(offsets)
    pitch = offsets[1] - offsets[0]
    need = max(5.0, 4.0 * scene.noise, _POST_DEPTH * (c.inside - scene.sky))
    # How far each point falls below the darker of two points either side
    # of it: a glare's smooth slope never does, a post does. Near points
    # for a thin post on a steep slope of glare, far ones for a thick one.
    k = max(2, int(round(max(_POST_FLANKS) * r / pitch)))
    middle = profile[:, k:-k]
    flanks = np.full_like(middle, -np.inf)
    for share in _POST_FLANKS:
        d = max(1, int(round(share * r / pitch)))
        flanks = np.fmax(flanks, np.minimum(profile[:, k - d : count - k - d], profile[:, k + d : count - k + d]))
    with np.errstate(invalid="ignore"):
        gap = np.nan_to_num(flanks - middle, nan=-np.inf)
    # The post's column: the one dark in most rows below, give or take a
    # lean (the circle's centre may be a little off the post).
    lean = max(1, int(round(max(2.0, 0.1 * r) / pitch)))
    near = np.abs(offsets[k:-k]) <= _POST_OFFSET * r
    dark = cv2.dilate(((gap > need) & near).astype(np.uint8), np.ones((1, 2 * lean + 1), np.uint8))
    j = int(np.argmax(dark[~above].sum(axis=0) - 1e-3 * np.abs(offsets[k:-k]) / r))
    window = slice(max(0, j - lean), j + lean + 1)
    below = np.flatnonzero(~above)
    at = window.start + np.argmax(gap[below, window], axis=1)
    # A post stands in smooth glare, beside another post or two at most: a
    # row dented in many places as deeply (the waves in the Moon's glitter
    # on the sea, branches) shows none.
    deep = gap[below] > np.maximum(need, 0.5 * gap[below, at])[:, None]
    deep[:, max(0, j - 2 * lean) : j + 2 * lean + 1] = False
    dents = np.count_nonzero(np.diff(deep.astype(np.int8), axis=1) == 1, axis=1) + deep[:, 0]
    poled = (gap[below, at] > need) & (dents <= _POST_OTHERS)
    if poled.sum() < _POST_ROWS or not poled[:3].any():
        return None
    if light and (not poled[:_POST_ROWS].all() or dents[:_POST_ROWS].any()):
        return None
    post = middle[below, at][poled]
    # Rows where the sky beside it is no brighter than the post (the post
    # in front of a roof or a hill) cannot show it.
    seen = poled | (flanks[below, at] - float(np.median(post)) > need)
    if poled.sum() < _POST_SHARE * seen.sum():
        return None
    # A post stands upright (give or take the phone's tilt); a branch leans.
    line = np.polyfit(rows[below][poled], offsets[k:-k][at[poled]], 1)
    tilt = line[0]
    if abs(tilt) > _POST_TILT:
        return None
    # Above the disk, as dark as the post below (the sky between two
    # lamps' glares is darker than either, but not that dark), and near
    # its line.
    reach = int(round(_POST_SLANT * r / pitch))
    over = ((gap > need) & (middle <= float(post.max()) + need))[above][:, max(0, j - reach) : j + reach + 1]
    if over.size and over.any(axis=1).sum() >= max(2, 0.5 * len(over)):
        return None
    return line, lean * pitch


def _bands_across_disk(scene, c):
    """Where narrow dark bands cross the disk: rows from 0.8 r above its
    centre to 0.8 r below, offsets across 0.6 r either side, and whether
    each point falls half the disk's height above the sky (the Moon's maria
    fall a fifth; a post or a twig in front of it, far more) below the
    points 0.15 r either side of it. None when too little is in the frame."""
    r = c.r
    rows = c.y + r * np.linspace(-0.8, 0.8, 13)
    rows = rows[(rows >= 0) & (rows < scene.smooth.shape[0] - 1)]
    if len(rows) < 7:
        return None
    count = max(25, int(1.2 * r) + 1) | 1
    offsets = np.linspace(-0.6, 0.6, count) * r

    def sample(shift):
        xs = np.tile(c.x + offsets + shift, len(rows))
        return _sample(scene.smooth_f, xs, np.repeat(rows, count)).reshape(len(rows), count)

    flank = 0.15 * r
    band = sample(0.0)
    sides = np.minimum(sample(-flank), sample(flank))
    with np.errstate(invalid="ignore"):
        dark = sides - band > _POST_THROUGH_DEPTH * (c.inside - scene.sky)
    return rows, offsets, dark


def _post_crosses_disk(bands, c, line, lean):
    """Whether narrow dark bands (``bands``, see _bands_across_disk) cross
    the disk off the post's line (``line``: its offset from the centre by
    row, as np.polyfit fits it; ``lean``: how far off still counts as on
    it) in _POST_THROUGH of the rows, spread across it, as the twigs of a
    tree in front of the Moon fork from its trunk: a lamp's post holds its
    globe from below and never shows in front of its light. On the line,
    or all in one upright band, it may be another lamp's post in front of
    this one's glare."""
    rows, offsets, dark = bands
    width = max(lean, 0.1 * c.r)
    dark = dark & (np.abs(offsets[None, :] - np.polyval(line, rows)[:, None]) > width)
    if dark.any(axis=1).sum() < _POST_THROUGH:
        return False
    # All in one upright band: another post (or a pole) in front of the
    # glare, not branches forking across the disk.
    across = offsets[dark.any(axis=0)]
    return bool(across.max() - across.min() > 2 * width)


def _post_in_front(bands, c, line, lean):
    """Whether the post's line runs dark across the disk's upper half, in
    _POST_IN_FRONT of the rows above its centre: in front of the disk, up
    past where a lamp's globe would sit on it."""
    rows, offsets, dark = bands
    width = max(lean, 0.1 * c.r)
    on = dark & (np.abs(offsets[None, :] - np.polyval(line, rows)[:, None]) <= width)
    return int(on[rows < c.y - 0.1 * c.r].any(axis=1).sum()) >= _POST_IN_FRONT


def _side_of_a_light(scene, c):
    """Whether the circle is fitted along one side of a light that reaches
    far into it (a lamp's elliptic or oblong head, a pair of headlights,
    the Sun's disk at the top of a circle in its glare), not round a disk.
    What is lit from the limb inwards, over a short arc of it, is a
    crescent (its terminator bulges towards the limb), or a disk cut off
    by a roof or a cloud (a straight edge at most): either way within the
    chord joining the ends of that arc. A light one edge of the circle fits
    reaches past that chord, towards the centre and beyond. Not judged over
    an arc the frame's edge ends or cuts (the rest of the lit arc lies off
    the frame; a pair of headlights at the frame's foot is judged by its
    two sides), nor over a longer arc (a half or gibbous Moon's terminator
    bulges inwards)."""
    bins = _ANGLE_BINS
    n = max(24, min(int(np.ceil(c.r)), _SIDE_SAMPLES))
    theta = (np.arange(bins) + 0.5) / bins * 2 * np.pi - np.pi
    radii = c.r * np.linspace(1.0, 0.0, n + 1)
    profile = _sample(
        scene.smooth_f,
        (c.x + radii[:, None] * np.cos(theta)).ravel(),
        (c.y + radii[:, None] * np.sin(theta)).ravel(),
    ).reshape(n + 1, bins)
    with np.errstate(invalid="ignore"):
        lit = profile > c.outside + 0.5 * (c.inside - c.outside)
    first = np.argmax(lit, axis=0)
    band = int(_SIDE_START * n) + 1
    # Directions whose limb lies off the frame.
    cut = np.isnan(profile[0])
    from_limb = lit.any(axis=0) & (first < band) & ~cut
    if from_limb.sum() < 3 or from_limb.all():
        return False
    # The arcs between directions whose limb shows the sky: neither darker
    # than the sky beyond (a branch or a roof in front of the disk hides it)
    # nor stepping down across the circle (a dim part of the disk: maria, a
    # coin's relief; a glare inside it falls smoothly through it).
    limb = np.nan_to_num(profile[:band], nan=np.inf).max(axis=0)
    outer = _sample(scene.smooth_f, c.x + _SIDE_BEYOND * c.r * np.cos(theta), c.y + _SIDE_BEYOND * c.r * np.sin(theta))
    margin = max(_SIDE_HIDDEN, 0.3 * (c.inside - c.outside))
    with np.errstate(invalid="ignore"):
        disk = ((limb < c.outside - margin) | ~(limb - outer <= _SIDE_STEP * (c.inside - c.outside))) & ~cut
    # How deep the light reaches from the limb, in radii, in each direction.
    beyond = (np.arange(n + 1)[:, None] >= first) & ~lit
    depth = np.where(beyond.any(axis=0), np.argmax(beyond, axis=0), n + 1) / n
    # The lit arcs: directions lit from the limb or showing the disk, joined
    # across gaps of up to _SIDE_GAP directions (a branch across the limb);
    # a light crossing the circle lights two opposite ones.
    shown = np.flatnonzero(disk | from_limb)
    # Directions within _SIDE_NEAR_CUT of one whose limb is off the frame:
    # an arc holding any may go on off the frame.
    near_cut = np.zeros(bins, bool)
    for shift in range(-_SIDE_NEAR_CUT, _SIDE_NEAR_CUT + 1):
        near_cut |= np.roll(cut, shift)
    gaps = np.diff(np.append(shown, shown[0] + bins)) - 1
    breaks = np.flatnonzero(gaps > _SIDE_GAP)
    runs = []
    for k, end in enumerate(breaks):
        start = shown[(breaks[k - 1] + 1) % len(shown)]
        runs.append((start + np.arange((shown[end] - start) % bins + 1)) % bins)
    # A circle lit from its limb over _SIDE_DISK_LIMB in one arc is a
    # disk's: a lamp in front of its dark limb lights a short arc as well.
    if any(from_limb[run].sum() * 360.0 / bins >= _SIDE_DISK_LIMB for run in runs):
        return False
    for run in runs:
        if len(run) * 360.0 / bins > _SIDE_SPAN:
            continue
        if near_cut[run].any():
            continue
        middle = run[max(0, len(run) // 2 - len(run) // 6) : len(run) // 2 + len(run) // 6 + 1]
        middle = middle[from_limb[middle]]
        if from_limb[run].sum() < 3 or not len(middle):
            continue
        chord = 1.0 - np.cos(np.pi * len(run) / bins)
        reach = float(np.median(depth[middle]))
        if reach > chord + _SIDE_PAST_CHORD:
            return True
        if (
            len(run) * 360.0 / bins >= _SIDE_UNBENT_SPAN
            and reach > chord + _SIDE_PAST_CHORD_UNBENT
            and _far_edge_unbent(run, depth, from_limb, reach, bins)
        ):
            return True
    return False


def _far_edge_unbent(run, depth, lit, reach, bins):
    """Whether the far edge of what is lit over ``run`` (directions of the
    circle, ``depth`` in radii from the limb in each, ``reach`` at its
    middle) is straight or bulges away from the limb, read at the run's
    shoulders (_SIDE_SHOULDERS of its length in from either end): a
    crescent's terminator bulges towards the limb, as the limb does."""
    middle = run[len(run) // 2]
    height = 1.0 - reach
    for share in _SIDE_SHOULDERS:
        j = run[min(len(run) - 1, int(round((len(run) - 1) * share)))]
        if not lit[j]:
            return False
        turn = 2.0 * np.pi * min((j - middle) % bins, (middle - j) % bins) / bins
        if (1.0 - depth[j]) * np.cos(turn) < height:
            return False
    return True


def _bright_beyond(scene, c):
    """The share of directions in which the frame, 1.15 and 1.3 radii out, is still
    nearer the disk's brightness than the sky's: a disk (in a halo or not)
    stands out all round, while a circle fitted to the sky's edge above
    rounded tree crowns or roofs has the same sky beyond its upper half."""
    ring = _rings(scene.smooth_f, c.x, c.y, c.r, (1.15, 1.3), 72).ravel()
    ring = ring[np.isfinite(ring)]
    if len(ring) < 12:
        return 0.0
    return float(np.mean(ring > 0.5 * (c.inside + c.outside)))


def _open_past_limb(scene, c, directions=48):
    """Whether the circle's limb lies against something darker than the
    sky that runs on, with no step, across the rest of it (see _OPEN_SKY):
    a patch of sky above a treeline, not a disk in it."""
    rings = _rings(scene.smooth_f, c.x, c.y, c.r, (0.85, 0.92, 1.08, 1.15), directions)
    inner = 0.5 * (rings[0] + rings[1])
    outer = 0.5 * (rings[2] + rings[3])
    seen = np.isfinite(inner) & np.isfinite(outer)
    span = max(1.0, c.inside - c.outside)
    limb = seen & (inner - outer >= 0.5 * span)
    flat = seen & (np.abs(inner - outer) < 0.25 * span)
    if limb.sum() < _OPEN_LIMB or flat.sum() < max(3, _OPEN_SHARE * seen.sum()):
        return False
    past_limb = float(np.median(outer[limb]))
    height = max(1.0, float(np.median(inner[limb])) - past_limb)
    open_sky = float(np.median(outer[flat]))
    return (
        open_sky - past_limb >= _OPEN_SKY * height
        and past_limb - scene.sky <= _PAST_LIMB_DARK * (open_sky - scene.sky)
    )


def _is_glare(scene, c):
    """Whether the circle is a level of a glare around a small compact core
    at its centre rather than a disk (see _GLARE_CORE)."""
    height, width = scene.smooth.shape
    x0, x1 = max(0, int(c.x - c.r)), min(width, int(c.x + c.r) + 2)
    y0, y1 = max(0, int(c.y - c.r)), min(height, int(c.y + c.r) + 2)
    if x0 >= x1 or y0 >= y1:
        return False
    # A grid of about 64 x 64 points over the disk is enough to size its core.
    step = max(1, int(c.r / 32.0))
    patch = scene.smooth_f[y0:y1:step, x0:x1:step]
    yy, xx = np.mgrid[y0:y1:step, x0:x1:step]
    disk = np.hypot(xx - c.x, yy - c.y) <= c.r
    if disk.sum() < 20:
        return False
    values = patch[disk]
    peak = float(values.max())
    core_level = peak - max(8.0, 0.05 * (peak - scene.sky))
    core = values >= core_level
    area = float(core.sum()) * step * step
    core_radius = np.sqrt(area / np.pi)
    if core_radius > _GLARE_CORE * c.r:
        return False
    cx, cy = xx[disk][core].mean(), yy[disk][core].mean()
    spread = np.hypot(xx[disk][core] - cx, yy[disk][core] - cy).max()
    if np.hypot(cx - c.x, cy - c.y) > 0.25 * c.r or spread > 1.5 * core_radius + 2.0 * step:
        return False
    # The rim is far darker than the core: the light falls all the way out.
    return c.inside <= core_level - _GLARE_FALL * (core_level - c.outside)


def _sky_around(scene, c):
    """The brightness of the frame outside the disk (beyond 1.2 r): its
    upper quartile, as the horizon's silhouettes may hide much of a daylight
    sky; from a sparse grid; the disk's own ring when it fills the frame."""
    step, grid, counts = _grid(scene)
    # Every candidate asks: the whole grid's histogram, less that of the
    # points near the disk, is far cheaper than masking the whole grid.
    reach = 1.2 * c.r
    i0, i1 = max(0, int(np.ceil((c.y - reach) / step))), min(grid.shape[0], int((c.y + reach) / step) + 1)
    j0, j1 = max(0, int(np.ceil((c.x - reach) / step))), min(grid.shape[1], int((c.x + reach) / step) + 1)
    if i0 < i1 and j0 < j1:
        yy, xx = np.ogrid[i0:i1, j0:j1]
        near = np.hypot(xx * step - c.x, yy * step - c.y) <= reach
        counts = counts - np.bincount(grid[i0:i1, j0:j1][near], minlength=256)
    total = int(counts.sum())
    if total < 50:
        return c.outside
    return float(np.searchsorted(np.cumsum(counts), 0.75 * total))


def _grid(scene):
    """(step, the smoothed frame sampled every step pixels, its histogram),
    made once a scene: about 20,000 points."""
    if scene.grid is None:
        step = max(1, int(np.sqrt(scene.smooth.size / 20000.0)))
        scene.grid = (step, scene.smooth[::step, ::step], np.bincount(scene.smooth[::step, ::step].ravel(), minlength=256))
    return scene.grid


def _sky_above(scene, c):
    """The brightness of the frame above the disk's centre, outside 1.2 r:
    its upper quartile (the sky, where roofs and hills rise under the
    disk and hide half the frame); 0 when that is under _SKY_ABOVE_SHARE
    of the frame (the Sun rule takes the brighter of this and
    _sky_around): the corners beside a disk that fills the frame are its
    halo more than the sky."""
    step, grid, _ = _grid(scene)
    rows = min(grid.shape[0], int(c.y / step) + 1)
    if rows <= 0:
        return 0.0
    yy, xx = np.ogrid[:rows, : grid.shape[1]]
    values = grid[:rows][np.hypot(xx * step - c.x, yy * step - c.y) > 1.2 * c.r]
    if values.size < max(50, _SKY_ABOVE_SHARE * grid.size):
        return 0.0
    return float(np.percentile(values, 75))


def _disk_median(scene, c):
    """The median brightness within 0.8 r (the frame's part of it), from a
    grid of about 400 points: where a disk is blown out all over."""
    values = _disk_values(scene, c, 0.8)
    return float(np.median(values)) if values.size else c.inside


def _shows_phase(scene, c, sky_around):
    """Whether a part of the disk is unlit: a fifth of it within 0.9 r
    less than half way up from the sky round it to its limb, and none of it
    much darker than that sky (see _PHASE_LIT)."""
    values = _disk_values(scene, c, 0.9)
    if values.size < 20:
        return False
    height = max(1.0, c.inside - sky_around)
    darkest, fifth = np.percentile(values, (_PHASE_FLOOR_SHARE, _PHASE_SHARE))
    return bool(fifth < sky_around + _PHASE_LIT * height and darkest >= sky_around - _PHASE_DARKER * height)


def _lit_crescent(scene, c, sky_around):
    """Whether a circle of weak step is a crescent's: a limb round a
    crescent's share of it at least, stepping where lit as a limb does
    (_LIT_STEP on average), and the rest of the disk unlit."""
    return (
        c.coverage >= _CRESCENT_COVERAGE
        and c.support >= _LIT_SUPPORT
        and c.step >= _LIT_STEP * c.coverage
        and _shows_phase(scene, c, sky_around)
    )


def _disk_values(scene, c, reach):
    """Brightness within ``reach`` r of the centre (the frame's part of the
    disk), from a grid of about 400 points."""
    step = max(1.0, reach * c.r / 11.0)
    offsets = np.arange(-reach * c.r, reach * c.r + 1e-9, step)
    xs, ys = np.meshgrid(c.x + offsets, c.y + offsets)
    keep = np.hypot(xs - c.x, ys - c.y) <= reach * c.r
    values = _sample(scene.smooth_f, xs[keep], ys[keep])
    return values[np.isfinite(values)]


def _beside_sun(scene, c):
    """Whether the frame's largest blown-out region lies apart from the disk
    and is far larger than it: the Sun, and the disk one of its ghosts."""
    if scene.core is None:
        mask = (scene.smooth >= _SUN_CORE).astype(np.uint8)
        count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count < 2:
            scene.core = (0.0, 0.0, 0.0)
        else:
            i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            scene.core = (*centroids[i], float(np.sqrt(stats[i, cv2.CC_STAT_AREA] / np.pi)))
    x, y, radius = scene.core
    return radius >= _SUN_SIZE * c.r and np.hypot(x - c.x, y - c.y) > radius + c.r


def _edge_profile(smooth, x, y, r, level):
    """Where the mean radial profile through the lit limb drops fastest, as
    a fraction of r, and the fastest drop well inside the circle as a share
    of that: a disk in a glow drops at its own rim, inside the glow's."""
    factors = np.linspace(0.5, 1.3, 41)
    theta = np.linspace(-np.pi, np.pi, 48, endpoint=False)
    xs = x + r * factors[:, None] * np.cos(theta)[None]
    ys = y + r * factors[:, None] * np.sin(theta)[None]
    profile = _sample(smooth, xs.ravel(), ys.ravel()).reshape(xs.shape)
    # Angles whose limb is lit and in the frame; beyond the frame (a disk
    # filling it) the profile keeps its last value there.
    lit = np.isfinite(profile[factors <= 1.1]).all(axis=0) & (profile[factors.searchsorted(0.9)] > level)
    if lit.sum() < 4:
        return np.nan, np.nan
    profile = profile[:, lit]
    for i in range(1, len(factors)):
        gone = ~np.isfinite(profile[i])
        profile[i, gone] = profile[i - 1, gone]
    mean = profile.mean(axis=1)
    drop = mean[:-2] - mean[2:]
    centres = factors[1:-1]
    best = int(np.argmax(drop))
    inner = drop[centres <= 0.9]
    return float(centres[best]), float(max(inner.max(), 0.0) / max(drop[best], 1e-6))


def _candidates(grey, scene):
    """Every plausible disk at every threshold level, with its measurements."""
    height, width = grey.shape
    smooth, smooth_f, sky, top, noise = scene.smooth, scene.smooth_f, scene.sky, scene.top, scene.noise
    levels = sorted({sky + f * (top - sky) for f in _LEVELS})
    found = []
    boxes = []
    gap = round(_CLOSE_GAP * min(height, width))
    joiner = _Joiner(smooth, gap) if gap > 0 else None
    for level in levels:
        mask = (smooth > level).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not contours:
            continue
        areas = np.array([cv2.contourArea(c) for c in contours])
        order = np.argsort(-areas)[:_MAX_REGIONS_PER_LEVEL]
        if areas[order[0]] < np.pi * _MIN_RADIUS**2:
            continue
        # Every outline at this level, for pieces of one disk cut apart by
        # branches or cloud: a circle fitted to one piece collects the rest.
        edge = np.concatenate([c.reshape(-1, 2)[:: max(1, len(c) // 400)] for c in contours]).astype(np.float64)
        edge = edge[_off_border(edge, width, height)]
        regions = [(contours[i], False) for i in order if areas[i] >= np.pi * _MIN_RADIUS**2]
        if joiner is not None:
            regions += [(outline, True) for outline in joiner.regions(level, sky, noise)]
        for outline, joined in regions:
            outline = outline.reshape(-1, 2)
            bx, by, bw, bh = cv2.boundingRect(outline)
            # The same object at a neighbouring level: nothing new to fit.
            box = np.array([bx, by, bx + bw, by + bh])
            if any(np.abs(box - seen).max() <= max(1, 0.02 * max(bw, bh)) for seen in boxes):
                continue
            boxes.append(box)
            region = np.zeros((bh + 2, bw + 2), np.uint8)
            cv2.drawContours(region, [outline - (bx - 1, by - 1)], -1, 1, thickness=-1)
            fits = _fit_region(outline, region, (bx - 1, by - 1), edge, smooth_f, level, sky, top - sky, width, height)
            for candidate in fits:
                candidate.joined = joined
            found.extend(fits)
    for candidate in found:
        candidate.noise = noise
    return found


class _Joiner:
    """Regions of each level with their dark gaps closed (see _CLOSE_GAP),
    looked for on a half-size copy: a closing by a disk costs 7.5 ms on a
    megapixel mask, a quarter of that at half size, and a half-size
    outline is close enough to start a circle from (the circle is then
    refitted on the full-size outlines, _collect)."""

    def __init__(self, smooth, gap):
        height, width = smooth.shape
        self.half = cv2.resize(smooth, (max(1, width // 2), max(1, height // 2)), interpolation=cv2.INTER_AREA)
        self.gap = max(1, round(gap / 2))
        self.disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * self.gap + 1, 2 * self.gap + 1))

    def regions(self, level, sky, noise):
        """Full-size outlines of the regions at ``level`` that closing
        joined across a real gap: pixels well below the level (branches
        are dark; a glow's ragged edge at a level through its gentle slope
        is only noise below it), and large beside the gap (a closing that
        joins two lamps a gap apart makes a blob the gap's size)."""
        mask = (self.half > level).astype(np.uint8)
        closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.disk)
        outlines, _ = cv2.findContours(closed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        if not outlines:
            return []
        areas = np.array([cv2.contourArea(c) for c in outlines])
        out = []
        for i in np.argsort(-areas)[:_CLOSE_REGIONS]:
            if areas[i] < np.pi * max(_MIN_RADIUS / 2, _CLOSE_SIZE * self.gap) ** 2:
                break
            bx, by, bw, bh = cv2.boundingRect(outlines[i])
            region = np.zeros((bh, bw), np.uint8)
            cv2.drawContours(region, [outlines[i] - (bx, by)], -1, 1, thickness=-1)
            filled = (region > 0) & (mask[by : by + bh, bx : bx + bw] == 0)
            if np.count_nonzero(filled) < _CLOSE_FILLED * areas[i]:
                continue
            below = level - float(np.median(self.half[by : by + bh, bx : bx + bw][filled]))
            if below < max(_CLOSE_NOISE * noise, _CLOSE_DARK * (level - sky)):
                continue
            out.append(outlines[i] * 2)
        return out


def _limb_points(outline, width, height):
    """Points of a region's outline on its convex hull and off the frame's border."""
    step = max(1, len(outline) // 480)
    points = outline[::step].astype(np.float64)
    on_border = ~_off_border(points, width, height)
    hull = cv2.convexHull(outline.astype(np.int32)).reshape(-1, 2).astype(np.float64)
    if len(hull) < 3:
        return points[~on_border], points
    extent = float(np.ptp(hull, axis=0).max())
    tolerance = max(1.0, 0.02 * extent)
    # Every point lies inside the convex hull, where the distance to its
    # boundary is the least distance to the lines of its edges: one matrix
    # product instead of a projection onto every segment.
    seg = np.roll(hull, -1, axis=0) - hull
    length = np.hypot(seg[:, 0], seg[:, 1])
    start, seg, length = hull[length > 1e-9], seg[length > 1e-9], length[length > 1e-9]
    normal = np.column_stack((-seg[:, 1], seg[:, 0])) / length[:, None]
    distance = np.abs(points @ normal.T - (start * normal).sum(axis=1)).min(axis=1)
    keep = (distance <= tolerance) & ~on_border
    return points[keep], points


def _circle_through(a, b, c):
    """Circles through triples of points (vectorised); NaN where collinear."""
    ax, ay = a[:, 0], a[:, 1]
    bx, by = b[:, 0], b[:, 1]
    cx, cy = c[:, 0], c[:, 1]
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    with np.errstate(divide="ignore", invalid="ignore"):
        a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
        ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
        uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    r = np.hypot(ax - ux, ay - uy)
    return ux, uy, r


def _refine(points, x, y, r, iterations=6):
    """Geometric least-squares circle (Gauss-Newton): unbiased on short arcs,
    unlike the algebraic fit, which matters for crescents."""
    px, py = points[:, 0], points[:, 1]
    for _ in range(iterations):
        dx, dy = px - x, py - y
        dist = np.maximum(np.hypot(dx, dy), 1e-9)
        residual = dist - r
        # J = [-ux, -uy, -1]: the normal equations from two matrix products.
        jac = np.vstack((dx, dy, dist)) / dist
        try:
            delta = np.linalg.solve(jac @ jac.T, jac @ residual)
        except np.linalg.LinAlgError:
            break
        x, y, r = x + delta[0], y + delta[1], r + delta[2]
        if np.abs(delta).max() < 1e-2:
            break
    return x, y, abs(r)


def _ransac(points, max_radius, batch=_RANSAC_TRIALS):
    """The circle most hull points agree on, refined on its inliers. A fixed
    seed keeps the detector deterministic. Trials run in batches of
    ``batch``, stopping once the best one's inlier share makes a better
    circle unlikely to have been missed (one in a thousand)."""
    rng = np.random.default_rng(12345)
    n = len(points)
    trials = rng.integers(0, n, size=(_RANSAC_TRIALS, 3))
    best_count, best_fit = -1, None
    for start in range(0, _RANSAC_TRIALS, batch):
        chunk = trials[start : start + batch]
        ux, uy, r = _circle_through(points[chunk[:, 0]], points[chunk[:, 1]], points[chunk[:, 2]])
        ok = np.isfinite(r) & (r >= _MIN_RADIUS) & (r <= max_radius)
        if ok.any():
            ux, uy, r = ux[ok], uy[ok], r[ok]
            dist = np.hypot(points[None, :, 0] - ux[:, None], points[None, :, 1] - uy[:, None])
            tol = np.maximum(1.0, 0.025 * r)[:, None]
            inliers = np.abs(dist - r[:, None]) <= tol
            counts = inliers.sum(axis=1)
            best = int(np.argmax(counts))
            if counts[best] > best_count:
                best_count, best_fit = int(counts[best]), (ux[best], uy[best], r[best], inliers[best])
        if best_fit is not None and (1.0 - (best_count / n) ** 3) ** (start + len(chunk)) < 1e-3:
            break
    if best_fit is None:
        return None
    x, y, rad, mask = best_fit
    for _ in range(3):
        if mask.sum() < 5:
            return None
        x, y, rad = _refine(points[mask], x, y, rad)
        if not (np.isfinite(rad) and _MIN_RADIUS <= rad <= max_radius):
            return None
        dist = np.hypot(points[:, 0] - x, points[:, 1] - y)
        mask = np.abs(dist - rad) <= max(1.0, 0.025 * rad)
    return x, y, rad, mask


_SAMPLE_ROW = 8192


def _sample(image, xs, ys):
    """Bilinear samples of a float image at points; NaN outside the frame."""
    height, width = image.shape
    valid = (xs >= 0) & (ys >= 0) & (xs <= width - 1) & (ys <= height - 1)
    out = np.full(xs.shape, np.nan, np.float32)
    count = int(valid.sum())
    if count:
        mx = xs[valid].astype(np.float32)
        my = ys[valid].astype(np.float32)
        # remap's maps must stay under 32767 on a side: many points go in
        # rows of _SAMPLE_ROW, the last one padded.
        rows = -(-count // _SAMPLE_ROW)
        if rows > 1:
            pad = (0, rows * _SAMPLE_ROW - count)
            mx, my = np.pad(mx, pad), np.pad(my, pad)
        values = cv2.remap(image, mx.reshape(rows, -1), my.reshape(rows, -1), cv2.INTER_LINEAR)
        out[valid] = values.ravel()[:count]
    return out


def _rings(image, x, y, r, factors, directions):
    """Samples of a float image on circles round (x, y) of radius factor *
    r, one row per factor, ``directions`` evenly round from -pi; NaN
    outside the frame."""
    theta = np.linspace(-np.pi, np.pi, directions, endpoint=False)
    radii = r * np.asarray(factors, np.float64)[:, None]
    xs, ys = x + radii * np.cos(theta), y + radii * np.sin(theta)
    return _sample(image, xs.ravel(), ys.ravel()).reshape(xs.shape)


def _fit_region(outline, region_mask, origin, edge, smooth, level, sky, span, width, height):
    """Candidate disks for one thresholded region."""
    limb, all_points = _limb_points(outline, width, height)
    max_radius = 0.75 * max(width, height)
    rect_fill = 0.0
    if _off_border(outline, width, height).all():
        _, (box_w, box_h), _ = cv2.minAreaRect(outline)
        rect_fill = float(np.count_nonzero(region_mask)) / max(1.0, (box_w + 1.0) * (box_h + 1.0))
    fits = []
    if len(limb) >= 8:
        fit = _ransac(limb, max_radius)
        if fit is not None:
            fits.append(fit[:3])
        # A blurred or shaken Moon is an oval blob, on which the tight fit
        # locks onto one arc; a fit over the whole limb follows the blob.
        fits.append(_refine(limb, *_kasa(limb)))
    # A Moon behind thin cloud merges with the lit cloud around it; the
    # deepest point of the region, and the outline around it, is the disk.
    dist = cv2.distanceTransform(region_mask, cv2.DIST_L2, 5)
    _, depth, _, (px, py) = cv2.minMaxLoc(dist)
    if depth >= _MIN_RADIUS:
        x, y, r = px + origin[0], py + origin[1], depth
        for _ in range(2):
            d = np.hypot(all_points[:, 0] - x, all_points[:, 1] - y)
            near = (np.abs(d - r) <= 0.3 * r) & _off_border(all_points, width, height)
            if near.sum() < 8:
                break
            x, y, r = _refine(all_points[near], x, y, r)
        fits.append((x, y, r))
    out = []
    for x, y, r in fits:
        if not (np.isfinite(r) and _MIN_RADIUS <= r <= max_radius):
            continue
        if any(abs(r - c.r) < 0.03 * r and np.hypot(x - c.x, y - c.y) < 0.03 * r for c in out):
            continue
        x, y, r, arc = _collect(x, y, r, edge, smooth, level, max_radius)
        if arc is None:
            continue
        candidate = _evaluate(x, y, r, limb, arc, smooth, level, sky, span, width, height)
        if candidate is not None:
            candidate.rect_fill = rect_fill
            out.append(candidate)
    return out


def _collect(x, y, r, edge, smooth, level, max_radius):
    """Refit a circle on every outline point of its level that lies on it
    with the bright side inwards; those points are the visible limb."""
    arc = None
    for _ in range(2):
        dist = np.hypot(edge[:, 0] - x, edge[:, 1] - y)
        near = np.abs(dist - r) <= max(1.5, 0.08 * r)
        if near.sum() < 6:
            return x, y, r, arc
        points, d = edge[near], dist[near][:, None]
        unit = (points - (x, y)) / np.maximum(d, 1e-9)
        probe = max(1.5, 0.05 * r)
        inner = points - probe * unit
        outer = points + probe * unit
        ins = _sample(smooth, inner[:, 0], inner[:, 1])
        out = _sample(smooth, outer[:, 0], outer[:, 1])
        # Outside the frame counts as dark: a limb cut by the border is fine.
        limb = (ins > level) & ~(out > level)
        if limb.sum() < 6:
            return x, y, r, arc
        arc = points[limb]
        nx, ny, nr = _refine(arc, x, y, r)
        if not (np.isfinite(nr) and _MIN_RADIUS <= nr <= max_radius) or np.hypot(nx - x, ny - y) > 0.3 * r:
            return x, y, r, arc
        x, y, r = nx, ny, nr
    return x, y, r, arc


def _off_border(points, width, height):
    return (points[:, 0] > 1) & (points[:, 1] > 1) & (points[:, 0] < width - 2) & (points[:, 1] < height - 2)


def _kasa(points):
    """Algebraic circle fit: a fine start for the geometric one."""
    x, y = points[:, 0], points[:, 1]
    a = np.column_stack((x, y, np.ones_like(x)))
    (p, q, c), *_ = np.linalg.lstsq(a, x * x + y * y, rcond=None)
    cx, cy = p / 2.0, q / 2.0
    return cx, cy, float(np.sqrt(max(c + cx * cx + cy * cy, 0.0)))


def _evaluate(x, y, r, limb, arc, smooth, level, sky, span, width, height):
    # A Moon cut by the frame still shows its centre; a circle centred off the
    # frame is a guess from a short arc of some other edge.
    if not (0 <= x < width and 0 <= y < height):
        return None
    if len(limb) < 5:
        return None
    dist = np.hypot(limb[:, 0] - x, limb[:, 1] - y)
    near = np.abs(dist - r) <= max(1.5, 0.15 * r)
    support = float(near.mean())
    arc_dist = np.hypot(arc[:, 0] - x, arc[:, 1] - y)
    arc = arc[np.abs(arc_dist - r) <= max(1.5, 0.08 * r)]
    angles = np.arctan2(arc[:, 1] - y, arc[:, 0] - x)
    bins = np.unique(((angles + np.pi) / (2 * np.pi) * _ANGLE_BINS).astype(int) % _ANGLE_BINS)
    coverage = len(bins) / _ANGLE_BINS

    # The step across the circle, all the way round: a soft halo edge or an
    # arc fitted to one side of something else steps down weakly or rarely.
    theta = (np.arange(_ANGLE_BINS) + 0.5) / _ANGLE_BINS * 2 * np.pi - np.pi
    delta = max(1.5, 0.12 * r)
    cos, sin = np.cos(theta), np.sin(theta)
    inner = _sample(smooth, x + (r - delta) * cos, y + (r - delta) * sin)
    # A thin crescent is narrower than delta: just inside its limb as well.
    near = max(1.5, 0.03 * r)
    inner = np.fmax(inner, _sample(smooth, x + (r - near) * cos, y + (r - near) * sin))
    outer = _sample(smooth, x + (r + delta) * cos, y + (r + delta) * sin)
    known = np.isfinite(inner) & np.isfinite(outer)
    if known.sum() < 8:
        return None
    steps = (inner[known] - outer[known]) / span
    step = float(np.clip(steps, 0, 1).sum() / max(known.sum(), _ANGLE_BINS // 2))
    # Brightness where the limb is lit: a crescent is dark on most of its rim.
    lit = steps > 0.1
    inside = float(np.median(inner[known][lit])) if lit.any() else sky
    ring = _rings(smooth, x, y, r, (1.3, 1.6), 48).ravel()
    ring = ring[np.isfinite(ring)]
    # A disk filling the frame has no ring in it: its rim's outer side is all
    # there is of the sky.
    outside = float(np.median(ring)) if len(ring) > 8 else float(np.median(outer[known]))
    bright = (inside - sky) / span
    rim_x, rim_y = x + r * cos, y + r * sin
    in_frame = float(np.mean((rim_x >= 0) & (rim_x <= width - 1) & (rim_y >= 0) & (rim_y <= height - 1)))
    return _Candidate(x, y, r, coverage, step, inside, outside, level, support, bright, in_frame=in_frame)


def _drop_surface_features(candidates):
    """Craters and bright rays are small circles inside the disk that may
    score above it; a glow is a circle round the disk, centred on it. So a
    circle inside a fair rival is dropped unless it sits at that rival's
    centre and is not much smaller (the disk inside its halo). A rival that
    is only an arc (coverage under 0.4, or no more than the inner circle's)
    is no disk to contain anything, unless it is a plausible disk standing
    out of the sky with a sharp limb (contrast 0.6, step 0.15: a day Moon
    cut by the frame stands 0.66 out of its blue sky), which may show as
    little as _ARC_SEEN of its rim, and (when it shows no more of its rim
    than the inner circle does) the inner circle is under _CRATER of its
    size: a crescent, whose lit limb is less of its circle than a crater's
    rim is of its own (a circle round two overlapping coins has as little
    limb, but contains coins, not craters); its coverage, and its score
    as a fair rival, are counted over the part of its rim inside the frame
    (half of it at least), as a Moon cut by the frame's edge shows no more
    of its limb than that. So is the inner circle's score when it stands
    out of the sky alike (a Moon cut by the frame inside a looser circle
    round it), and its coverage when it is a disk (half its limb or more:
    a crescent's arc or a fragment keeps its coverage as it is). A
    container filling its frame (_fills_frame) counts its
    score _FILLING_GAIN times: a bright crater inside a half Moon filling
    its crop outscores the Moon itself."""
    kept = []
    for a in candidates:
        feature = False
        # A disk standing out of its sky with a sharp limb, cut by the
        # frame, is weighed on its rim in the frame as its container is; a
        # bright patch has the surface round it, not the sky.
        a_in_frame = max(a.in_frame, 0.5)
        a_score = a.score
        if _sharp_limbed(a):
            a_score /= a_in_frame
        # Both limbs over their rims in the frame: a disk cut by the frame
        # inside a looser circle round it and its halo, both cut, shows no
        # less of its limb than that circle does.
        a_seen = a.coverage / a_in_frame if a.coverage >= _PHASE_COVERAGE else a.coverage
        for b in candidates:
            in_frame = max(b.in_frame, 0.5)
            b_score = b.score * (_FILLING_GAIN if b.filling else 1.0)
            if b is a or b.r <= a.r:
                continue
            sharp_arc = b.score >= _MIN_SCORE and _sharp_limbed(b)
            # A whole such disk contains the small circles inside it however
            # they score: a dim Moon's bright crater rims (brightness counts
            # squared) outscored it four and a half times.
            whole_sharp = sharp_arc and b.coverage >= _WHOLE_COVERAGE
            if b_score / in_frame < _CONTAINER_SHARE * a_score and not (whole_sharp and a.r < _CRATER * b.r):
                continue
            if b.contrast < _CONTAINER_CONTRAST * a.contrast:
                continue
            seen = b.coverage / in_frame
            if seen < 0.4 and not (sharp_arc and seen >= _ARC_SEEN):
                continue
            if seen < a_seen + 0.05 and not (sharp_arc and a.r < _CRATER * b.r):
                continue
            offset = np.hypot(a.x - b.x, a.y - b.y)
            if offset + a.r > 1.15 * b.r:
                continue
            if offset > 0.25 * b.r or a.r < 0.25 * b.r:
                feature = True
                break
        if not feature:
            kept.append(a)
    return kept or candidates


def _sharp_limbed(c):
    """Whether a circle stands out of its sky (_STANDS_OUT_SHARP) with a
    sharp limb (_SHARP_STEP)."""
    return c.contrast >= _STANDS_OUT_SHARP and c.step >= _SHARP_STEP


def _nested_in_glare(c, candidates):
    """Whether a whole circle is a level of a glare: a whole circle at a
    brighter level round the same centre is far smaller (_GLARE_NESTED of
    its radius or less), the light still rising well inside it. Across a
    Moon's limb every level's circle is the limb's, give or take its blur."""
    if c.coverage < _WHOLE_COVERAGE:
        return False
    for o in candidates:
        if (
            o.level > c.level
            and o.coverage >= _WHOLE_COVERAGE
            and 0.2 * c.r <= o.r <= _GLARE_NESTED * c.r
            and np.hypot(o.x - c.x, o.y - c.y) <= 0.15 * c.r
        ):
            return True
    return False


def _fills_frame(c, scene):
    """Whether a circle is a Moon filling its frame (see _FILLING_GAIN)."""
    return (
        c.r >= _LARGE * min(scene.smooth.shape)
        and c.coverage >= _CRESCENT_COVERAGE
        and c.support >= _CRESCENT_SUPPORT
        and c.contrast >= _STANDS_OUT
        and c.step >= _FILLING_STEP * c.coverage
    )


def _min_contrast(scene, c):
    """How far a disk must stand above the ring around it (_MIN_CONTRAST)."""
    return max(min(_MIN_CONTRAST, _MIN_CONTRAST_SHARE * (scene.top - scene.sky)), 6.0 * c.noise)


def _contrast(c, scene):
    """How far the ring around a disk falls from its limb towards the sky, 0 to 1."""
    return float(np.clip((c.inside - c.outside) / max(c.inside - scene.sky, 1e-6), 0.0, 1.0))


def _choose(candidates, scene):
    """(The Moon among the candidates or None, the other disks most like it:
    see moon_candidates)."""
    if not candidates:
        return None, []
    scene.lights = candidates
    for c in candidates:
        c.contrast = _contrast(c, scene)
        c.score = c.step * c.bright**2 * c.coverage * c.support
        c.filling = _fills_frame(c, scene)
        if c.filling:
            c.score = max(c.score, min(_FILLING_GAIN * c.score, _MIN_SCORE))
            if c.coverage < _MIN_COVERAGE:
                # Let in with less limb than a circle that large is asked,
                # it is at the floor at most: the answer only when nothing
                # else is, not a rival to a circle of the same Moon round
                # more of its limb (one through a brighter level, limb 0.32
                # against 0.38, outscored it and was 1.8% smaller: three
                # registrations lost).
                c.score = min(c.score, _MIN_SCORE)
        # Blobs of noise are round too; the Moon stands far above the noise.
        # A large circle needs most of a limb, unless it fills its frame
        # as a thin crescent does (the skyline's and glows' circles run
        # along their regions' hulls 0.54-0.59: see _LARGE_SUPPORT).
        if (
            c.inside - c.outside < _min_contrast(scene, c)
            or c.r < _MIN_RADIUS_FOUND
            or (
                c.r >= _LARGE * min(scene.smooth.shape)
                and not c.filling
                and (c.coverage < _MIN_COVERAGE or (c.coverage < _PHASE_COVERAGE and c.support < _LARGE_SUPPORT))
            )
        ):
            c.score = 0.0
        c.rival_score = c.disk_score = c.score
        doubt = c.doubt = _doubt(c, scene) if c.score else None
        if doubt is not None:
            # A planet or a lamp's glare is not the Moon; it still counts as a
            # look-alike below (a sky of stars, a row of lamps), unless it is
            # no disk at all.
            c.score = 0.0
            if doubt in _NOT_A_DISK:
                c.rival_score = 0.0
            c.on_post = doubt == "lamp"
            c.glare = doubt == "glare"
            c.point = doubt == "small" and c.coverage >= _WHOLE_COVERAGE
            c.sun = doubt == "sun" and c.coverage >= _WHOLE_COVERAGE
        if c.coverage < _MIN_ANY_COVERAGE:
            # Not the Moon, but still counted as a look-alike (a coin's circle).
            c.score = 0.0
    # The Sun is never in front of the Moon: a circle round it is its glare.
    suns = [o for o in candidates if o.sun]
    for c in candidates:
        if c.score and any(
            o.r <= _SUN_LOOSE * c.r and np.hypot(o.x - c.x, o.y - c.y) + o.r <= c.r for o in suns
        ):
            c.score = 0.0
    # A circle through pieces joined across gaps, well inside a much larger
    # circle that needed no joining and is a Moon to the scores, is a lump
    # of that disk a branch cut off, with the branch's edge for a limb.
    # It must show a disk's limb, too: joined across a lamp and its
    # neighbours, a level makes arcs of circles round them.
    unjoined = [o for o in candidates if not o.joined and o.score >= _MIN_SCORE]
    for c in candidates:
        if not (c.joined and c.score):
            continue
        if c.coverage < _JOINED_COVERAGE or any(
            c.r <= _JOINED_LUMP * o.r and np.hypot(c.x - o.x, c.y - o.y) + c.r <= _JOINED_INSIDE * o.r
            for o in unjoined
        ):
            c.score = 0.0
    # A looser circle round a point source's whole disk, hardly larger, is
    # a level of its glare (a headlight's: 15 px round its 14 px disk).
    points = [c for c in candidates if c.point]
    for c in candidates:
        if c.score and any(
            o.r >= _POINT_CORE * c.r and np.hypot(o.x - c.x, o.y - c.y) <= (1.0 - _POINT_CORE) * c.r for o in points
        ):
            c.score = 0.0
    candidates.sort(key=lambda c: -c.score)
    everything = candidates
    candidates = _drop_surface_features(candidates)
    # Look-alikes are whole objects: a bright crater inside the Moon is no
    # lamp's twin, and as one it would shut the Moon out with the lamps.
    whole = list(candidates)
    # Each object (circles at several levels, concentric or overlapping) is
    # its best-scoring circle. Between objects the Moon stands out from what
    # is around it, a lamp sits in its own glare: a whole lamp outscores a
    # half Moon on coverage alone, but weighed by how far the ring around
    # each falls towards the sky the Moon comes first. (Within one object
    # the weight would favour the loosest circle, out in the glow.)
    objects = []
    for c in candidates:
        if not any(_same_object(c, o) for o in objects):
            objects.append(c)
    # Two objects may give way to one circle round both: it stands once.
    objects = list({id(c): c for c in (_sharper_container(o, candidates, scene) for o in objects)}.values())
    for c in objects:
        c.rank = c.score * c.contrast**_RANK_POWER
    candidates = _surface_first(sorted(objects, key=lambda c: -c.rank), scene)
    # The Moon has no look-alikes: several disks of its size, each nearly as
    # convincing, are coins, lamps or bubbles, and none of them is the Moon;
    # the Moon may still be elsewhere in the frame, at another size.
    excluded = []
    for best in candidates:
        if best.score < _MIN_SCORE:
            continue
        # Beside a family of look-alikes (a street of lamps, coins, stars)
        # the Moon, if there at all, is the disk that stands out by size too.
        if any(np.hypot(best.x - o.x, best.y - o.y) < o.r + best.r or best.r < 1.67 * o.r for o in excluded):
            continue
        # A post found under most of the object's circles (the globe's own
        # outline, levels of its glare) makes the whole object a lamp.
        if _mostly_on_post(best, everything):
            continue
        rivals = []
        twin = None  # the contrast below which a circle is no twin of best
        if best.r >= _TWIN_MIN_RADIUS * min(scene.smooth.shape):
            if best.contrast >= _STANDS_OUT:
                twin = _TWIN_CONTRAST * best.contrast
            elif _sharp_limbed(best):
                twin = _SHARP_TWIN * best.contrast
        textured = _surface(scene, best) >= _MOON_SURFACE
        for c in whole:
            if c is best or c.rival_score < _RIVAL_SHARE * best.score or not _alike_in_size(c, best):
                continue
            # A level of a lamp's glare, with glare all round it, is no twin
            # of a disk standing out of a dark sky.
            if twin is not None and c.contrast < twin:
                continue
            # Nor is a flat disk (a lamp's globe or a level of its glare) the
            # twin of one showing a surface.
            if textured and _surface(scene, c) < _FLAT_SURFACE:
                continue
            # Nor, of a disk standing out of its sky, is a level of a lamp's
            # glare round its small core, whatever detail the glare's fall
            # reads as (a Moon above two lamps: 0.03 against its 0.15). A
            # disk that stands out less (a star's glare, textured by its
            # spikes) keeps such look-alikes.
            if twin is not None and textured and c.glare:
                continue
            # A crescent's twin is another crescent, not a whole disk.
            if best.coverage < _PHASE_COVERAGE and c.coverage >= _WHOLE_COVERAGE:
                continue
            if any(np.hypot(c.x - o.x, c.y - o.y) < o.r + c.r for o in [best] + rivals):
                continue
            rivals.append(c)
        # One twin is no family (a Moon beside one lamp its size), unless
        # both are whole and flat: a pair of headlights or of lamp globes,
        # where no measure here tells which would be the Moon.
        flat_pair = (
            len(rivals) == 1
            and best.coverage >= _PAIR_COVERAGE
            and rivals[0].step >= _PAIR_STEP
            and _flat_core(scene, best, everything)
            and _flat_core(scene, rivals[0], everything)
        )
        if len(rivals) < 2 and not flat_pair:
            # Alone, a level of a glare is still no Moon: rather no
            # answer than a planet (a Moon's halo circle, so chosen, would
            # be no right answer either).
            if _nested_in_glare(best, everything):
                return None, _runners_up(everything, None, excluded)
            best = _cut_disk_round(best, everything, scene)
            return best, _runners_up(everything, best, excluded)
        excluded.extend([best] + rivals)
    return None, _runners_up(everything, None, excluded)


def _cut_disk_round(best, candidates, scene):
    """The circle of the Moon that ``best`` is a piece of, or ``best``: a
    crescent or half Moon cut by the frame shows a short arc of its limb
    and its terminator, and a circle fitted to a brighter piece of it
    (its limb round under _PIECE_COVERAGE of it) outscores the Moon's own,
    whose limb in the frame is shorter still. The Moon's circle is cut by
    the frame, holds the piece off its centre (a disk's core or halo is
    concentric), is _PIECE_LARGER times its size or more, shows
    _CUT_DISK_COVERAGE of its limb, stands out of the sky
    (_CUT_DISK_CONTRAST) with a limb as sharp as the piece's and sharp
    to its floor, was doubted nothing, and nothing as bright as half the
    piece lies round it (_CUT_DISK_RING): the lit part of a Moon lies
    within its disk. Of several such, the best scored."""
    if best.coverage >= _PIECE_COVERAGE:
        return best
    own = None
    choice = None
    for c in candidates:
        if (
            c is best
            or c.in_frame >= 1.0
            or c.rival_score <= 0.0
            or c.doubt is not None
            or c.r < _PIECE_LARGER * best.r
            or c.coverage < _CUT_DISK_COVERAGE
            or c.contrast < _CUT_DISK_CONTRAST
            or (choice is not None and c.rival_score <= choice.rival_score)
        ):
            continue
        offset = np.hypot(c.x - best.x, c.y - best.y)
        if offset + best.r > 1.15 * c.r or offset < 0.25 * c.r:
            continue
        if _lit_round(scene, c, scene.sky + 0.5 * (best.inside - scene.sky)) > _CUT_DISK_RING:
            continue
        if own is None:
            own = _sharpness_and_floor(scene, best)[0]
        sharp, floor = _sharpness_and_floor(scene, c)
        if sharp >= floor and sharp >= own:
            choice = c
    return choice or best


def _lit_round(scene, c, level):
    """The share of the frame's pixels from 1 to 1.3 radii out of ``c``
    brighter than ``level``."""
    height, width = scene.smooth.shape
    reach = 1.3 * c.r
    x0, x1 = max(0, int(c.x - reach)), min(width, int(c.x + reach) + 2)
    y0, y1 = max(0, int(c.y - reach)), min(height, int(c.y + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return 0.0
    yy, xx = np.ogrid[y0:y1, x0:x1]
    distance = np.hypot(xx - c.x, yy - c.y)
    ring = (distance > c.r) & (distance <= reach)
    total = int(ring.sum())
    if total == 0:
        return 0.0
    return float(np.count_nonzero(ring & (scene.smooth_f[y0:y1, x0:x1] > level))) / total


def _sharper_container(best, candidates, scene, own=None):
    """The circle that stands for ``best``'s object (see _SHARPER): a
    larger circle of the same object, cut by the frame, round ``best``,
    whose limb is sharper by _SHARPER and whose score is a Moon's and
    _SHARPER_SHARE of ``best``'s at least; itself weighed so in turn. Else
    ``best``. ``own``: ``best``'s limb sharpness, when read already."""
    if not best.score:
        return best
    for c in candidates:
        if (
            c is best
            or c.in_frame >= 1.0
            or c.r < _SHARPER_LARGER * best.r
            or c.score < max(_SHARPER_SHARE * best.score, min(best.score, _MIN_SCORE))
            or np.hypot(c.x - best.x, c.y - best.y) + best.r > 1.15 * c.r
        ):
            continue
        if own is None:
            own = _sharpness_and_floor(scene, best)[0]
            if not np.isfinite(own):
                return best
        sharp = _sharpness_and_floor(scene, c)[0]
        if np.isfinite(sharp) and sharp >= _SHARPER * own:
            return _sharper_container(c, candidates, scene, sharp)
    return best


def _flat_core(scene, c, everything):
    """Whether the disk is flat (_FLAT_SURFACE), or a level of a glare round
    a flat core: a circle of the same object, about as large
    (_CORE_SHARE of its radius and up) and round the same centre. A
    headlight's glare fades over a few pixels past its blown-out core, and
    the circle through that fall, just large enough not to be a point,
    reads the fall as detail."""
    if _surface(scene, c) < _FLAT_SURFACE:
        return True
    return any(
        _CORE_SHARE * c.r <= o.r < c.r
        and np.hypot(o.x - c.x, o.y - c.y) <= (1.0 - _CORE_SHARE) * c.r
        and _surface(scene, o) < _FLAT_SURFACE
        for o in everything
    )


def _surface_first(objects, scene):
    """``objects`` (ranked), with a larger disk showing a surface put before
    a featureless, blown-out one that ranks first: a lamp's globe or a
    planet's glare is flat white, the Moon beside it (exposed for the
    scene, so not blown out itself) shows its maria and craters."""
    if len(objects) < 2:
        return objects
    first = objects[0]
    if first.score < _MIN_SCORE:
        return objects
    flat = _flat_bright(scene, first)
    if not (flat or _point_like(scene, first)):
        return objects
    larger = _SURFACE_LARGER if flat else _POINT_LARGER
    for c in objects[1:]:
        crescent = (
            _CRESCENT_COVERAGE <= c.coverage < _PHASE_COVERAGE
            and c.step >= _SHARP_STEP
            and c.support >= _CRESCENT_SUPPORT
        )
        if (
            c.score >= _MIN_SCORE and c.r >= larger * first.r and c.contrast >= _SURFACE_CONTRAST
            and (crescent or (c.coverage >= _SURFACE_COVERAGE and _surface(scene, c) >= _MOON_SURFACE))
        ):
            return [c] + [o for o in objects if o is not c]
    return objects


def _point_like(scene, c):
    """Whether a disk is too small to show a surface: a planet's or a
    lamp's glare (see _POINT_GLARE_SHARE)."""
    return c.r < _POINT_GLARE_SHARE * min(scene.smooth.shape)


def _surface_over(scene, c, sky_around):
    """The disk's detail within _SUN_INNER of its radius (as _spread reads
    it within 0.8 r) over its height above the sky it is seen against
    (sky_around) rather than above the frame's floor (_surface): dark roofs
    under a day Moon take its surface down to a third of that."""
    return _read_spread(scene, c, _SUN_INNER) / max(_SUN_MIN_HEIGHT, c.inside - sky_around)


def _flat_bright(scene, c):
    """Whether a disk is (nearly) blown out and shows no surface: a lamp's globe."""
    return c.inside >= _FLAT_BRIGHT and _surface(scene, c) < _FLAT_SURFACE


def _surface(scene, c):
    """How much detail the disk shows: the spread of its fine structure
    (what a blur of an eighth of its radius removes) within 0.8 r, where
    lit (half way up from the sky to its limb), over its brightness above
    the sky."""
    return _spread(scene, c) / max(1.0, c.inside - scene.sky)


def _spread(scene, c):
    """The spread of the disk's fine structure where lit (see _surface), in
    grey levels; kept on the candidate."""
    if c.spread is None:
        c.spread = _read_spread(scene, c)
    return c.spread


def _read_spread(scene, c, inner=0.8):
    height, width = scene.smooth.shape
    x0, x1 = max(0, int(c.x - c.r)), min(width, int(c.x + c.r) + 1)
    y0, y1 = max(0, int(c.y - c.r)), min(height, int(c.y + c.r) + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    return _spread_in(scene.smooth_f[y0:y1, x0:x1], x0, y0, c, scene.sky + 0.5 * (c.inside - scene.sky), inner)


def _spread_in(patch, x0, y0, c, lit_level, inner=0.8):
    """_read_spread on ``patch``, whose top left is (x0, y0) in the working
    copy, the disk (within ``inner`` of its radius) taken as lit from
    ``lit_level`` up."""
    detail = patch - cv2.GaussianBlur(patch, (0, 0), max(1.5, c.r / 8.0))
    yy, xx = np.ogrid[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
    disk = np.hypot(xx - c.x, yy - c.y) <= inner * c.r
    # Over the lit part: a half Moon's dark half is as flat as the sky and
    # took its surface down to a lamp globe's (0.013-0.016 against 0.03).
    lit = disk & (patch >= lit_level)
    if int(lit.sum()) >= 20:
        disk = lit
    values = detail[disk]
    if values.size < 20:
        return 0.0
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def _least_channel_surface(scene, c):
    """_surface_over read on the image's darkest channel, for a disk blown
    out in its luminance; infinite for an image without colour (nothing more
    to read). A day Moon's maria may show in one channel only: the sky's
    blue adds to the disk's light and clips blue and green all over it,
    while red keeps the maria (a second generator's day Moon: red 218-241
    in the maria, 255 beyond, its luminance 242-255, its surface 0.016).
    The Sun is blown out in every channel."""
    return _least_channel(scene, c)[1]


def _least_channel(scene, c):
    """(The disk's level on the image's darkest channel, the 75th
    percentile within 0.8 r; _least_channel_surface's reading), or (inf,
    inf) where there is nothing to read; kept on the candidate."""
    if c.least_channel is None:
        c.least_channel = _read_least_channel(scene, c)
    return c.least_channel


def _read_least_channel(scene, c):
    if scene.colour is None:
        return np.inf, np.inf
    image, factor = scene.colour
    reach = _LEAST_CHANNEL_REACH * c.r
    height, width = image.shape[:2]
    # The working copy's box, in the image's pixels (see _to_image).
    x0, y0 = max(0, int(np.floor(c.x - reach))), max(0, int(np.floor(c.y - reach)))
    x1 = min(scene.smooth.shape[1], int(np.ceil(c.x + reach)) + 1)
    y1 = min(scene.smooth.shape[0], int(np.ceil(c.y + reach)) + 1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return np.inf, np.inf
    X0, Y0 = int(round(x0 / factor)), int(round(y0 / factor))
    X1, Y1 = min(width, int(round(x1 / factor))), min(height, int(round(y1 / factor)))
    crop = image[Y0:Y1, X0:X1, :3]
    if crop.dtype != np.uint8:
        crop = _to_uint8(crop)
    least = crop.min(axis=2)
    if (X1 - X0, Y1 - Y0) != (x1 - x0, y1 - y0):
        least = cv2.resize(least, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    patch = cv2.GaussianBlur(least, (0, 0), 1.0).astype(np.float32)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    distance = np.hypot(xx - c.x, yy - c.y)
    around = (distance >= 1.2 * c.r) & (distance <= reach)
    ring = patch[around]
    inner = patch[distance <= 0.8 * c.r]
    if ring.size < 20 or inner.size < 20:
        return np.inf, np.inf
    sky, level = float(np.percentile(ring, 75)), float(np.percentile(inner, 75))
    spread = _spread_in(patch, x0, y0, c, sky + 0.5 * (level - sky), _SUN_INNER)
    # A channel that does not clip shows its noise on the disk as in the sky
    # round it (a setting Sun's blue): only what stands above that noise
    # is surface.
    steps = np.abs(np.diff(least.astype(np.float32), axis=1))[around[:, 1:] & around[:, :-1]]
    noise = _blurred_noise(steps) if steps.size >= 20 else 0.0
    return level, np.sqrt(max(0.0, spread**2 - noise**2)) / max(_SUN_MIN_HEIGHT, level - sky)


def _coloured_globe(scene, c):
    """Whether a whole disk blown out in its luminance and flat is a
    coloured lamp's globe (see _GLOBE_CHANNEL): its darkest channel well
    short of clipping and as flat."""
    if c.coverage < _WHOLE_COVERAGE or not _flat_bright(scene, c):
        return False
    level, surface = _least_channel(scene, c)
    return bool(level < _GLOBE_CHANNEL and surface < _FLAT_SURFACE)


def _mostly_on_post(best, everything):
    """Whether the circles of ``best``'s object (_alike_in_size) found
    standing on a post outweigh the others, by their scores before doubt:
    one circle's post may be a trunk or a roof's edge under the Moon, most
    of them is a lamp's (on the sets of "Moon detection", two Moons lose to
    a post under any one of their circles; to a majority, none). Circles
    fitted to joined regions (_Joiner) have no vote: the same levels with
    their gaps closed would count a lamp's circles twice (second
    generator 93018: a lamp on its post was answered)."""
    weight = {True: 0.0, False: 0.0}
    for c in everything:
        if c.joined:
            continue
        if c.disk_score >= _MIN_SCORE and _same_object(best, c) and _alike_in_size(c, best):
            weight[c.on_post] += c.disk_score
    return weight[True] > weight[False]


def _runners_up(everything, best, excluded):
    """The disks passed over, one circle per object, ordered as objects are
    ranked but on their scores before any doubt, the members of a family of
    look-alikes last (a row of lamps is more often only lamps)."""
    family = {id(c) for c in excluded}
    order = sorted(
        (c for c in everything if c is not best and c.disk_score >= _MIN_SCORE),
        key=lambda c: (id(c) in family, -c.disk_score * c.contrast**_RANK_POWER),
    )
    kept = []
    for c in order:
        if not any(_same_object(c, o) for o in kept + ([best] if best else [])):
            kept.append(c)
    return kept


def _alike_in_size(a, b):
    """Whether ``a`` is ``b``'s size, 0.6-1.67x: a look-alike, or another
    circle fitted to the same object."""
    return 0.6 < a.r / b.r < 1.67


def _same_object(a, b):
    """Whether two circles are one object: one's centre inside the other,
    unless the one inside is a small disk (under _CRATER of the other's
    radius) towards the other's rim (beyond _OWN_CORE of its radius from
    its centre) that stands out of what is round it (_STANDS_OUT_SHARP): a
    lamp's globe in front of the Moon's limb (0.83) is an object of its
    own, not a level of the Moon (nor the Moon a level of the lamp, passed
    over with it). A crater there has the Moon's surface round it
    (0.31-0.38) and stays the Moon's; a lamp's core in its glare, or the
    Moon inside its halo, sits round the same centre."""
    small, large = (a, b) if a.r < b.r else (b, a)
    offset = np.hypot(a.x - b.x, a.y - b.y)
    if small.r < _CRATER * large.r and offset > _OWN_CORE * large.r and small.contrast >= _STANDS_OUT_SHARP:
        return False
    return offset < large.r
