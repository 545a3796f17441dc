"""Serial framing on the RS-485 wire: what one character costs and what it looks like.

The bus simulator charges every byte its real bit time, and the fault injector flips
bits inside the character frame (start, data, parity, stop), so both need the same
model of a UART character:

    start(0) | d0 .. d7 (LSB first) | parity (E/O, optional) | stop(1) x 1..2

Bits per byte: 11 at 8E1, 8O1 and 8N2, 10 at 8N1.  Virtual time is kept in integer
microseconds; :attr:`LineSettings.byte_us` is the character time rounded to the
nearest microsecond (95 us at 115200 8E1), which is what every timing in the
simulator is built from, so the rounding never accumulates inconsistently.

Parity lives here, not on the host's tty: the Linux pty driver rejects PARENB
(``tcsetattr`` -> EINVAL; pyserial ``parity='E'`` on a pty raises), so a host
program opens the simulator's pty as 8N1 while the simulated wire keeps 8E1.
"""

from __future__ import annotations

from dataclasses import dataclass

PARITIES = ("N", "E", "O")

#: Above 19200 baud Modbus fixes the inter-frame and inter-character gaps
#: (Modbus over serial line v1.02, 2.5.1.1) instead of scaling them with the baud.
FIXED_T35_US = 1750
FIXED_T15_US = 750
FIXED_GAP_ABOVE_BAUD = 19200


@dataclass(frozen=True)
class LineSettings:
    """Baud, data bits, parity and stop bits of one serial line (default 115200 8E1)."""

    baud: int = 115200
    parity: str = "E"
    stop_bits: int = 1
    data_bits: int = 8

    def __post_init__(self) -> None:
        if self.parity not in PARITIES:
            raise ValueError(f"parity must be one of {PARITIES}, not {self.parity!r}")
        if self.stop_bits not in (1, 2):
            raise ValueError(f"stop_bits must be 1 or 2, not {self.stop_bits}")
        if not 5 <= self.data_bits <= 8:
            raise ValueError(f"data_bits must be 5..8, not {self.data_bits}")
        if self.baud <= 0:
            raise ValueError(f"baud must be positive, not {self.baud}")

    @classmethod
    def parse(cls, text: str, baud: int = 115200) -> LineSettings:
        """Settings from the usual shorthand, e.g. ``"8E1"``, ``"8N2"``."""
        text = text.strip().upper()
        if len(text) != 3 or not text[0].isdigit() or not text[2].isdigit():
            raise ValueError(f"line format must look like '8E1', not {text!r}")
        return cls(baud=baud, parity=text[1], stop_bits=int(text[2]), data_bits=int(text[0]))

    @property
    def name(self) -> str:
        return f"{self.baud} {self.data_bits}{self.parity}{self.stop_bits}"

    @property
    def bits_per_byte(self) -> int:
        """Start + data + parity + stop bits of one character."""
        return 1 + self.data_bits + (0 if self.parity == "N" else 1) + self.stop_bits

    @property
    def byte_s(self) -> float:
        """Exact character time in seconds."""
        return self.bits_per_byte / self.baud

    @property
    def byte_us(self) -> int:
        """Character time in whole microseconds (rounded), the simulator's unit."""
        return max(1, round(self.bits_per_byte * 1_000_000 / self.baud))

    @property
    def bit_us(self) -> float:
        return 1_000_000 / self.baud

    @property
    def t35_us(self) -> int:
        """Minimum silence between RTU frames (3.5 characters, 1750 us above 19200 baud)."""
        if self.baud > FIXED_GAP_ABOVE_BAUD:
            return FIXED_T35_US
        return round(3.5 * self.bits_per_byte * 1_000_000 / self.baud)

    @property
    def t15_us(self) -> int:
        """Maximum silence inside an RTU frame (1.5 characters, 750 us above 19200 baud)."""
        if self.baud > FIXED_GAP_ABOVE_BAUD:
            return FIXED_T15_US
        return round(1.5 * self.bits_per_byte * 1_000_000 / self.baud)

    def duration_us(self, nbytes: int) -> int:
        """Wire time of ``nbytes`` back-to-back characters."""
        return nbytes * self.byte_us


DEFAULT_LINE = LineSettings()


def parity_bit(value: int, parity: str, data_bits: int = 8) -> int | None:
    """The parity bit a transmitter appends (None for no parity)."""
    if parity == "N":
        return None
    ones = bin(value & ((1 << data_bits) - 1)).count("1")
    return (ones & 1) if parity == "E" else (ones & 1) ^ 1


def encode_char(value: int, line: LineSettings = DEFAULT_LINE) -> list[int]:
    """The bits of one character in wire order (start bit first)."""
    bits = [0]
    bits.extend((value >> i) & 1 for i in range(line.data_bits))
    p = parity_bit(value, line.parity, line.data_bits)
    if p is not None:
        bits.append(p)
    bits.extend([1] * line.stop_bits)
    return bits


@dataclass(frozen=True)
class Received:
    """What a UART makes of one character frame: the data and its error flags."""

    value: int
    parity_error: bool = False
    framing_error: bool = False

    @property
    def ok(self) -> bool:
        return not (self.parity_error or self.framing_error)


def decode_char(bits: list[int], line: LineSettings = DEFAULT_LINE) -> Received:
    """Decode one character frame as a receiving UART would.

    A receiver that sees a 0 where a stop bit belongs reports a framing error; a
    corrupted start bit (1) is treated the same way, because the UART would have
    resynchronised on a later edge and the character is lost either way.
    """
    if len(bits) != line.bits_per_byte:
        raise ValueError(f"expected {line.bits_per_byte} bits, got {len(bits)}")
    value = 0
    for i in range(line.data_bits):
        value |= (bits[1 + i] & 1) << i
    pos = 1 + line.data_bits
    parity_error = False
    expected = parity_bit(value, line.parity, line.data_bits)
    if expected is not None:
        parity_error = bits[pos] != expected
        pos += 1
    framing_error = bits[0] != 0 or any(b != 1 for b in bits[pos:])
    return Received(value, parity_error, framing_error)


def flip_bits(value: int, positions: list[int], line: LineSettings = DEFAULT_LINE) -> Received:
    """Send ``value``, invert the character-frame bits at ``positions``, receive it."""
    bits = encode_char(value, line)
    for pos in positions:
        bits[pos] ^= 1
    return decode_char(bits, line)
