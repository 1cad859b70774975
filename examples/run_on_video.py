"""Run a trained AdaFocus on one video file and print its prediction and where it looked.

Run: python examples/run_on_video.py MODEL VIDEO [--topk 5] [--labels classes.txt]

MODEL is a stage checkpoint (.ckpt), a file written by `adafocus export` or one written by
`adafocus convert-official`. The video (any length, anything PyAV decodes) is sampled like an
evaluation clip: T frames at the centres of T equal segments, resized and centre-cropped.
The command-line equivalent is `adafocus predict VIDEO --checkpoint MODEL`.
"""

import argparse

from adafocus import load_model
from adafocus.predict import predict_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="trained model file")
    parser.add_argument("video", help="video file")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--num-frames", type=int, default=None, help="T (default: the model's, else 16)")
    parser.add_argument("--labels", help="class names, one per line")
    args = parser.parse_args()

    names = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            names = [line.strip() for line in f]

    model = load_model(args.checkpoint)  # eval mode, CPU
    result = predict_video(model, args.video, topk=args.topk, num_frames=args.num_frames, class_names=names)

    print(f"{result['path']}: {result['num_frames']} of {result['video_frames']} frames")
    print("scores:")
    for c in result["topk"]:
        print(f"  class {c['class']:>4} {c['name'] or '':<20} {c['score']:.4f}")
    size = result["input_size"]
    print(f"patch boxes (y, x, h, w) in the {size}x{size} model input:")
    for t, box in enumerate(result["boxes"]):
        skipped = "keep" in result and not result["keep"][t]
        print(
            f"  frame {t:>3} (video frame {result['frame_indices'][t]}): {tuple(box)}"
            + (" f_L skipped" if skipped else "")
        )


if __name__ == "__main__":
    main()
