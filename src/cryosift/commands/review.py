"""Review scores in the browser: sort and grade class averages, fine-tune from the grades.

Serves a local web page over a workflow results folder (every dataset and step under
score/) or one scores.star: a gallery sorted by score, distribution, resolution, mass or
particle count, coloured by the score cutoffs, a detail view per class (features, particles
kept at each cutoff), grades A-F or 1-5 set with the keyboard and saved to a grades CSV that
`cryosift train --labels` reads, and a button that fine-tunes the model from the grades and
shows the graded classes' scores before and after.

Listens on 127.0.0.1 (this machine only). --host 0.0.0.0 serves everyone who can reach this
machine: they can see the images and scores and change the grades, with no login; on a
cluster, prefer an SSH tunnel (ssh -L 8765:localhost:8765 HOST).

Examples::

    cryosift review results/demo
    cryosift review Score/job004/scores.star --port 8800
    cryosift review results/demo --grades mine.csv --epochs 20
"""

import ipaddress
import logging

from cryosift.errors import InputError

log = logging.getLogger(__name__)


def add_args(parser):
    parser.add_argument("path", help="workflow results folder (holding score/<dataset>/<step>/) or one scores.star")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only; see above)")
    parser.add_argument("--grades", help="grades CSV to read and write (default: review/grades.csv in the "
                                         "results folder, or beside the scores.star)")
    parser.add_argument("--init", default="default",
                        help="model fine-tuning starts from: 'default' (shipped) or a checkpoint (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--device", help="device for fine-tuning and rescoring: cuda, cpu (default: GPU if present)")


def main(args):
    from werkzeug.serving import make_server

    from cryosift.review import create_app

    if not 0 < args.port < 65536:
        raise InputError(None, f"--port {args.port} is not a port number (1-65535)")
    device = ["--device", args.device] if args.device else []
    app = create_app(args.path, grades=args.grades, init=args.init, train_args=["--epochs", str(args.epochs), *device],
                     score_args=device)
    review = app.config["review"]
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        log.warning("listening on %s: anyone who can reach this machine can see these results and change the "
                    "grades (no login)", args.host)
    try:
        server = make_server(args.host, args.port, app, threaded=True)  # one thread per request
    except OSError as exc:
        raise InputError(None, f"cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    log.info("%d steps under %s; grades in %s", len(review.steps), args.path, review.grades.path)
    log.info("open http://%s:%d/ (Ctrl-C stops)", "localhost" if loopback else args.host, args.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()
