"""The diver's motion: a jointed figure whose take-off, flight and entry follow the dive number,
the step timing and the latent step qualities (each quality moves only its own step).

World frame in metres: x away from the board (board end at x = 0), y up (water at y = 0).
A pose is built in a 3-D body frame (f front, u head-ward, l lateral), turned by the twist
about the long axis, projected onto the side view and rotated by the somersault angle theta
(0 = head up, increasing clockwise, i.e. head travelling towards +x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aqa.data.synth.dive_numbers import DiveNumber
from aqa.data.synth.timeline import StepTiming

BOARD_HEIGHT = {"3m": 3.0, "10m": 10.0}
# segment lengths (m) of a 1.75 m diver
THIGH, SHIN, UPPER_ARM, FOREARM, TORSO, HEAD_R = 0.44, 0.44, 0.31, 0.30, 0.52, 0.12

# part ids drawn by the renderer: 1 near skin, 2 far skin, 3 swimsuit
NEAR, FAR, SUIT = 1, 2, 3


def _smooth(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _ramp(t, a, b):
    return _smooth((t - a) / max(b - a, 1e-6))


@dataclass
class Pose:
    hip: float = 0.0  # hip flexion (rad), + legs towards the front, - arched
    knee: float = 0.0  # knee flexion (rad)
    shoulder: float = 0.0  # arm angle from hanging (0) through forward (pi/2) to overhead (pi)
    elbow: float = 0.0
    twist: float = 0.0  # rotation about the long axis (rad)
    spread: float = 0.0  # lateral leg separation (rad)


@dataclass
class Frame:
    """Everything the renderer needs about the diver in one frame."""

    com: np.ndarray  # (2,) world position of the body centre
    theta: float
    pose: Pose
    facing: int  # +1 front towards +x at theta = 0
    splash: float  # 0 = none; else current splash size (m)
    splash_age: int  # frames since contact (-1 before)


class DiveMotion:
    """Per-frame motion of one dive. `quality` = (take-off, flight, entry) in [0, 1]."""

    def __init__(self, dn: DiveNumber, timing: StepTiming, board: str, quality: np.ndarray,
                 rng: np.random.Generator, fps: int = 25):
        self.dn, self.t, self.fps = dn, timing, fps
        q_to, q_fl, q_en = (float(v) for v in quality)
        self.h0 = BOARD_HEIGHT[board]
        self.springboard = board == "3m"
        sign = lambda: 1.0 if rng.random() < 0.5 else -1.0  # noqa: E731
        # take-off: jump height, lean at release, distance from the board, sway, crouch depth
        self.jump = 0.35 + 0.9 * q_to + rng.normal(0, 0.04)
        self.lean = (1 - q_to) * rng.uniform(0.15, 0.45) * sign()
        self.reach = 0.9 + (1 - q_to) * rng.uniform(0.4, 1.0) * sign()
        self.sway = (1 - q_to) * 0.18
        self.crouch = 0.45 + 0.7 * q_to
        # flight: tightness, steadiness, leg separation, come-out timing
        # wide ranges: with narrower ones the flight (half of the judges' weight) hardly
        # showed in the 112-pixel crops the features see
        self.tight = 0.2 + 0.8 * q_fl
        self.wobble = (1 - q_fl) * 0.6
        self.flight_spread = (1 - q_fl) * 0.7
        self.open_at = 0.72 + 0.25 * (1 - q_fl)  # share of the flight step before opening
        # entry: angle off vertical (short or over), arch, bent knees, legs apart, splash size
        self.entry_err = (1 - q_en) * rng.uniform(0.25, 0.6) * sign()
        self.arch = (1 - q_en) * 0.5
        self.entry_knee = (1 - q_en) * 0.6
        self.entry_spread = (1 - q_en) * 0.35
        self.splash_size = 0.25 + 2.4 * (1 - q_en) ** 1.2 + rng.uniform(0, 0.1)
        self.phase = rng.uniform(0, 2 * np.pi, size=6)
        self.freq = rng.uniform(0.15, 0.35, size=6)
        self.facing = 1 if dn.faces_water else -1
        self.rot = dn.rotation_sign
        theta0 = np.pi if dn.armstand else 0.0
        self.theta_start = theta0
        self.theta_end = theta0 + self.rot * dn.half_somersaults * np.pi
        self.x_stand = -0.35
        self._trajectory()

    def _trajectory(self) -> None:
        t = self.t
        self.y_leave = self.h0 + (0.2 if self.dn.armstand else 1.0)
        dur = max(t.contact - t.leave, 2) / self.fps
        hj, h0 = self.jump, self.y_leave - 0.3  # the centre ends 0.3 m above the water at contact
        root_g = np.sqrt(2.0) * (np.sqrt(hj) + np.sqrt(hj + h0)) / dur
        self.g = root_g**2
        self.v0 = np.sqrt(2 * self.g * hj)
        self.t_apex = self.v0 / self.g
        # reach the take-off's distance from the board at the apex, then drift on slowly
        self.vx = (self.reach - self.x_stand) / max(self.t_apex, 0.2)

    def _noise(self, k: int, f: float) -> float:
        return float(np.sin(2 * np.pi * self.freq[k] * f + self.phase[k]))

    def frame(self, f: int) -> Frame:
        t = self.t
        if f < t.leave:
            com, theta, pose = self._takeoff(f)
        elif f < t.entry:
            com, theta, pose = self._flight(f)
        else:
            com, theta, pose = self._entry(f)
        age = f - t.contact
        splash = 0.0
        if age >= 0:
            grow = min(1.0, (age + 1) / 6.0)
            decay = np.exp(-max(0, age - 6) / 10.0)
            splash = self.splash_size * grow * decay
        return Frame(np.asarray(com, dtype=float), float(theta), pose, self.facing, splash, age)

    # --- steps -------------------------------------------------------------------------------
    def _takeoff(self, f: int):
        s = f / max(self.t.leave, 1)  # 0..1 through the take-off step
        sway = self.sway * self._noise(0, f)
        if self.dn.armstand:
            # handstand at the platform edge, then push off
            push = _ramp(s, 0.8, 1.0)
            com = (self.x_stand + 0.1 + 0.3 * push, self.h0 + 1.0 - 0.8 * push + 0.05 * self.crouch * push)
            pose = Pose(hip=0.4 * push * self.crouch, shoulder=np.pi, knee=0.1 * push)
            theta = np.pi + sway * 0.5 + self.rot * 0.3 * push + self.lean * push
            return com, theta, pose
        bounce = (0.12 if self.springboard else 0.0) * np.sin(2 * np.pi * 2.5 * s) * (s < 0.6)
        dip = _ramp(s, 0.45, 0.75) - _ramp(s, 0.75, 0.95)  # crouch then extend
        knee = 1.3 * self.crouch * dip
        hip = 0.9 * self.crouch * dip
        arms = np.pi * _ramp(s, 0.1, 0.45) * (1 - dip) + 0.3 * dip + np.pi * _ramp(s, 0.85, 1.0)
        rise = _ramp(s, 0.8, 1.0)
        y = self.h0 + 1.0 - 0.35 * knee / 1.3 * self.crouch + bounce + 0.3 * rise
        com = (self.x_stand + 0.1 * rise, y)
        theta = sway * 0.4 + (self.lean + self.rot * 0.25) * rise
        return com, theta, Pose(hip=hip, knee=knee, shoulder=min(arms, np.pi))

    def _flight_com(self, f: float):
        s = (f - self.t.leave) / self.fps
        y = self.y_leave + self.v0 * s - 0.5 * self.g * s * s
        x = self.x_stand + 0.1 + self.vx * min(s, self.t_apex) + 0.25 * self.vx * max(0.0, s - self.t_apex)
        return x, y

    def _nominal_theta(self, f: float) -> float:
        t = self.t
        lead = self.theta_start + self.rot * 0.25 + self.lean
        span = max(t.entry - t.leave, 1)
        s = (f - t.leave) / span
        open_s = self.open_at
        p = 0.93 * _smooth(s / open_s) if s < open_s else 0.93 + 0.07 * min(1.0, (s - open_s) / (1 - open_s))
        return lead + (self.theta_end - lead) * p

    def _flight(self, f: int):
        t = self.t
        span = max(t.entry - t.leave, 1)
        s = (f - t.leave) / span
        held = _ramp(s, 0.0, 0.15) * (1 - _ramp(s, self.open_at - 0.08, self.open_at))
        w = self.wobble
        pos = self.dn.position
        twisting = t.twist is not None and t.twist[0] <= f < t.twist[1]
        if pos == "free":
            pos = "straight" if twisting else "pike"
        if pos == "tuck":
            hip, knee, sh, el = 2.3 * self.tight, 2.4 * self.tight, 1.3, 1.4
        elif pos == "pike":
            hip, knee, sh, el = 2.5 * self.tight, 0.9 * (1 - self.tight), 1.9 * self.tight, 0.2
        else:  # straight: a good one is a line, a poor one bends at hips and knees
            hip, knee, sh, el = 0.7 * (1 - self.tight), 0.8 * (1 - self.tight), 0.3, 0.0
        if twisting:
            sh, el = 0.9, 2.3  # arms wrapped across the chest
        pose = Pose(hip=held * hip + w * self._noise(1, f), knee=held * knee + abs(w * self._noise(2, f)),
                    shoulder=(1 - held) * np.pi + held * sh + w * self._noise(3, f), elbow=held * el,
                    twist=self._twist(f), spread=held * self.flight_spread)
        return self._flight_com(f), self._nominal_theta(f), pose

    def _twist(self, f: int) -> float:
        if self.t.twist is None:
            return 0.0
        a, b = self.t.twist
        return self.dn.half_twists * np.pi * float(_smooth((f - a) / max(b - a, 1)))

    def _entry(self, f: int):
        t = self.t
        line = _ramp(f, t.entry, t.contact)
        theta = self._nominal_theta(min(f, t.entry)) + self.entry_err * line
        pose = Pose(hip=-self.arch * line, knee=self.entry_knee * line, shoulder=np.pi,
                    twist=self._twist(f), spread=self.entry_spread * line)
        if f <= t.contact:
            com = self._flight_com(f)
        else:  # keeps sinking at the entry speed, slowing in the water
            x, y = self._flight_com(t.contact)
            vy = self.v0 - self.g * (t.contact - t.leave) / self.fps
            s = (f - t.contact) / self.fps
            com = (x, y + vy * s * 0.8)
        return com, theta, pose


def body_parts(fr: Frame, height: float = 1.0) -> list[tuple[str, np.ndarray, float, int]]:
    """Drawable parts in world metres: ('seg', (2, 2), radius, id) / ('poly', (n, 2), 0, id) /
    ('disc', (1, 2), radius, id), far side first."""
    p = fr.pose
    c, s = np.cos(p.twist), np.sin(p.twist)

    def proj(front, up, lat):  # body frame -> side view (a, b) after the twist
        return np.array([(front * c + lat * s) * fr.facing, up])

    def leg(side):
        dl = side * np.sin(p.spread) * 0.5
        h = p.hip
        hip = proj(0.0, 0.0, side * 0.09)
        knee = hip + proj(THIGH * np.sin(h), -THIGH * np.cos(h), THIGH * dl)
        k = h - p.knee
        ankle = knee + proj(SHIN * np.sin(k), -SHIN * np.cos(k), SHIN * dl)
        toe = ankle + proj(0.12 * np.sin(k - 0.3), -0.12 * np.cos(k - 0.3), 0)
        return [hip, knee, ankle, toe]

    def arm(side):
        a = p.shoulder
        sh = proj(0.0, TORSO - 0.04, side * 0.18)
        el = sh + proj(UPPER_ARM * np.sin(a), -UPPER_ARM * np.cos(a), 0)
        wr = el + proj(FOREARM * np.sin(a + p.elbow), -FOREARM * np.cos(a + p.elbow), 0)
        return [sh, el, wr]

    depth = np.sign(s) if abs(s) > 1e-3 else 1.0  # which side is nearer the camera
    torso_w = np.array([proj(ff, 0.0, ll)[0] for ff in (-0.13, 0.13) for ll in (-0.15, 0.15)])
    sh_w = np.array([proj(ff, 0, ll)[0] for ff in (-0.12, 0.12) for ll in (-0.2, 0.2)])
    torso = np.array([[torso_w.min(), 0.0], [torso_w.max(), 0.0], [sh_w.max(), TORSO], [sh_w.min(), TORSO]])
    suit = np.array([[torso_w.min(), -0.04], [torso_w.max(), -0.04], [torso_w.max(), 0.2], [torso_w.min(), 0.2]])
    head = proj(0.02, TORSO + 0.16, 0.0)

    pts_parts = []
    for side, pid in ((-depth, FAR), (depth, NEAR)):
        lg, am = leg(side), arm(side)
        pts_parts.append([("seg", np.array(lg[i:i + 2]), r, pid) for i, r in ((0, 0.09), (1, 0.07), (2, 0.045))])
        pts_parts.append([("seg", np.array(am[i:i + 2]), r, pid) for i, r in ((0, 0.065), (1, 0.052))])
    far = pts_parts[0] + pts_parts[1]
    near = pts_parts[2] + pts_parts[3]
    parts = far + [("poly", torso, 0.0, NEAR), ("poly", suit, 0.0, SUIT),
                   ("disc", head[None], HEAD_R, NEAR)] + near

    # centre the figure on its mean joint position, rotate by theta, scale, move to com
    centre = np.mean(np.concatenate([torso, head[None]] + [pp[1] for pp in far + near]), axis=0)
    ct, st = np.cos(fr.theta), np.sin(fr.theta)
    rot = np.array([[ct, st], [-st, ct]])  # (a, b) -> world, clockwise theta
    out = []
    for kind, pts, r, pid in parts:
        w = ((pts - centre) * height) @ rot.T + fr.com
        out.append((kind, w, r * height, pid))
    return out
