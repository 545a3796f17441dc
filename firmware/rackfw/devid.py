"""Read Device Identification (FC 0x2B, MEI type 0x0E) object table.

The strings are encoded once at boot from the identity block, so answering is
a copy loop into the TX buffer. Conformity level 0x82: basic + regular objects,
stream and individual access. Extended objects (read code 03) are not offered.
"""

from micropython import const

CONFORMITY = const(0x82)
OBJ_COUNT = const(7)  # 0 VendorName .. 6 UserApplicationName
_BASIC_LAST = const(2)
_REGULAR_LAST = const(6)
_OBJ_MAX = const(32)  # 7 objects x (2 + 32) bytes + header fit one 256-byte ADU


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
        elif code == 1 or code == 2:
            last = _BASIC_LAST if code == 1 else _REGULAR_LAST
            first = obj if obj <= last else 0  # unknown start: restart at 0 (spec 6.21)
        else:
            return -3
        tx[1] = 0x2B
        tx[2] = 0x0E
        tx[3] = code
        tx[4] = CONFORMITY
        tx[5] = 0  # more follows: everything fits in one response
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
