"""Reading the uploaded files out of a multipart/form-data request."""

import falcon

__all__ = ["read_files"]


def read_files(req, names, *, max_bytes, repeated=None):
    """Return ``{name: bytes}`` for the file fields ``names`` of the request.

    The size is checked from Content-Length before anything is read; parts
    are read with a bound too, for bodies sent without a length. Unknown
    fields are skipped; a field sent twice, missing or empty is refused.

    ``repeated`` maps optional fields that may come several times to the
    most allowed; each gets a list of bytes in the order sent (empty when
    absent). An empty part without a file name, what a browser sends for a
    file input left unchosen, is skipped.
    """
    repeated = repeated or {}
    content_type = req.content_type or ""
    if not content_type.lower().startswith("multipart/form-data"):
        raise falcon.HTTPUnsupportedMediaType(
            title="Unsupported content type",
            description=(
                f"The request must be multipart/form-data with the fields {', '.join(names)}, "
                f"not {content_type.split(';')[0] or 'a body without a content type'}."
            ),
        )
    if req.content_length is not None and req.content_length > max_bytes:
        raise _too_large(req.content_length, max_bytes)
    if not req.content_length:
        # No form to read; and Falcon's multipart parser asserts that the
        # length is known (a POST without Content-Length would be a 500).
        raise falcon.HTTPBadRequest(
            title="Empty body",
            description=(
                f"The request has no body (or no Content-Length): send {', '.join(names)} as multipart/form-data."
            ),
        )

    files = {}
    try:
        for part in req.get_media():
            name = part.name
            if name in repeated:
                _read_repeated(part, files.setdefault(name, []), repeated[name], max_bytes)
                continue
            if name not in names:
                continue
            if name in files:
                raise falcon.HTTPBadRequest(
                    title="Duplicate field", description=f"The form field {name!r} was sent more than once."
                )
            data = part.stream.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise _too_large(None, max_bytes)
            files[name] = data
    except falcon.HTTPInvalidHeader as exc:
        # Falcon reads the boundary from Content-Type only when parsing starts.
        raise falcon.HTTPBadRequest(
            title="Malformed form",
            description="The request's Content-Type says multipart/form-data but gives no usable boundary.",
        ) from exc
    except falcon.MediaMalformedError as exc:
        detail = exc.description or "it could not be parsed"
        raise falcon.HTTPBadRequest(
            title="Malformed form",
            description=f"The request body is not a valid multipart/form-data form: {detail.rstrip('.')}.",
        ) from exc
    except UnicodeDecodeError as exc:
        # Falcon decodes a part's Content-Disposition as UTF-8 and lets the error out.
        raise falcon.HTTPBadRequest(
            title="Malformed form",
            description="The request body is not a valid multipart/form-data form: a part's headers are not UTF-8.",
        ) from exc

    for name in names:
        if name not in files:
            raise falcon.HTTPBadRequest(
                title="Missing field", description=f"The form field {name!r} is missing: send it as a file."
            )
        if not files[name]:
            raise falcon.HTTPBadRequest(title="Empty field", description=f"The form field {name!r} is empty.")
    for name in repeated:
        files.setdefault(name, [])
    return files


def _read_repeated(part, parts, most, max_bytes):
    """Append one part of a repeatable field to ``parts``, within the limits."""
    data = part.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(None, max_bytes)
    if not data:
        if not part.filename:
            return
        raise falcon.HTTPBadRequest(
            title="Empty field", description=f"The form field {part.name!r} number {len(parts) + 1} is empty."
        )
    if len(parts) >= most:
        raise falcon.HTTPBadRequest(
            title="Too many files", description=f"At most {most} {part.name!r} parts may be sent."
        )
    parts.append(data)


def _too_large(size, limit):
    said = f" ({size} bytes)" if size is not None else ""
    return falcon.HTTPContentTooLarge(
        title="Upload too large",
        description=f"The request body{said} is larger than this server's limit of {limit} bytes.",
    )
