"""Draws examples/street.png, the README's example input (a simple street scene, no photo licence)."""
from pathlib import Path

from PIL import Image, ImageDraw


def draw_street(width: int = 640, height: int = 427) -> Image.Image:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height // 2):  # sky: light blue fading to white at the horizon
        shade = int(170 + 85 * y / (height // 2))
        draw.line([(0, y), (width, y)], fill=(shade - 40, shade - 10, 255))
    draw.rectangle([0, height // 2, width, height], fill=(70, 70, 75))  # road
    draw.rectangle([0, height // 2 - 4, width, height // 2 + 6], fill=(150, 150, 150))  # kerb
    for x in range(20, width, 90):  # lane markings
        draw.rectangle([x, int(height * 0.75), x + 45, int(height * 0.75) + 6], fill=(235, 235, 235))
    draw.rounded_rectangle([120, 240, 330, 320], radius=18, fill=(180, 20, 30))  # car body
    draw.rounded_rectangle([165, 200, 290, 250], radius=14, fill=(150, 15, 25))  # car cabin
    for cx in (165, 290):
        draw.ellipse([cx - 24, 300, cx + 24, 348], fill=(20, 20, 20))  # wheels
    draw.ellipse([452, 178, 478, 204], fill=(230, 190, 160))  # person: head, body, legs
    draw.rectangle([450, 204, 480, 270], fill=(40, 60, 140))
    draw.rectangle([452, 270, 463, 318], fill=(30, 30, 30))
    draw.rectangle([467, 270, 478, 318], fill=(30, 30, 30))
    draw.polygon([(540, 330), (560, 260), (580, 330)], fill=(255, 120, 0))  # traffic cone
    draw.rectangle([545, 290, 575, 300], fill=(255, 255, 255))
    return image


if __name__ == "__main__":
    draw_street().save(Path(__file__).with_name("street.png"), optimize=True)
