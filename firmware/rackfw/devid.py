"""Read Device Identification (FC 0x2B, MEI type 0x0E) object table.

The strings are encoded once at boot from the identity block, so answering is
a copy loop into the TX buffer. Conformity level 0x82: basic + regular objects,
stream and individual access. Rules from MAP V1.1b3 6.21:

- read code 01 basic (objects 0-2), 02 regular (0-6), 04 one object;
- read code 03 (extended) is above our conformity level, and "the server must
  respond in accordance with its actual conformity level": it is served like 02
  (the response keeps read code 03);
- stream access (01-03) from an object id the category does not hold restarts
  at object 0; individual access (04) to an unknown object is exception 02;
- a response must fit one PDU (253 bytes), else "more follows" = 0xFF and a
  "next object id" page the stream. Each object is cut at boot to 32 bytes, so
  all seven (8 + 7 x 34 = 246 bytes from the unit id) always fit one response:
  "more follows" and "next object id" are always 0, and no paging code has to
  live in RAM (the board's heap budget is tight).
"""

from micropython import const

CONFORMITY = const(0x82)
OBJ_COUNT = const(7)  # 0 VendorName .. 6 UserApplicationName
_BASIC_LAST = const(2)
_REGULAR_LAST = const(6)
_OBJ_MAX = const(32)  # 8 + 7 x (2 + 32) = 246 <= 254 (unit id + 253-byte PDU)


class DeviceId:
    def __init__(self, vendor, product_code, revision, url, product_name, model, app_name):
        # bytes, indexed by object id
        self.objects = (
            vendor.encode()[:_OBJ_MAX],
            product_code.encode()[:_OBJ_MAX],
            revision.encode()[:_OBJ_MAX],
            url.encode()[:_OBJ_MAX],
            product_name.encode()[:_OBJ_MAX],
            model.encode()[:_OBJ_MAX],
            app_name.encode()[:_OBJ_MAX],
        )

    def respond(self, rx, n, tx):
        """Build the PDU after ``tx[0]`` (unit id); return its end or -exception code."""
        if n != 7:  # addr, 2B, 0E, code, object, crc x2
            return -3
        code = rx[3]
        obj = rx[4]
        if code == 4:
            if obj >= OBJ_COUNT:
                return -2
            first = obj
            last = obj
        elif 0 < code < 4:
            last = _BASIC_LAST if code == 1 else _REGULAR_LAST
            first = obj if obj <= last else 0  # unknown start: restart at 0
        else:
            return -3
        tx[1] = 0x2B
        tx[2] = 0x0E
        tx[3] = code
        tx[4] = CONFORMITY
        tx[5] = 0  # more follows: everything fits in one response (_OBJ_MAX)
        tx[6] = 0  # next object id
        tx[7] = last - first + 1
        o = 8
        objs = self.objects
        for i in range(first, last + 1):
            s = objs[i]
            ln = len(s)
            tx[o] = i
            tx[o + 1] = ln
            o += 2
            for j in range(ln):
                tx[o + j] = s[j]
            o += ln
        return o
