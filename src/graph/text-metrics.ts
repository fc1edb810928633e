/**
 * Text widths for laying out SVG without a browser. The SVG names DejaVu
 * Sans first and Verdana second (the two share their metrics closely and
 * are the widest common sans-serif faces), so boxes sized from this table
 * hold their text in any of the fonts a viewer falls back to. Widths are in
 * thousandths of an em for ASCII 32..126, measured in Chromium.
 */

/**
 * The font stack the SVG writer uses; the table below measures its first
 * face.
 *
 * @internal
 */
export const fontFamily =
  "'DejaVu Sans', Verdana, 'Bitstream Vera Sans', sans-serif";

const regular = [
  318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318,
  337, 636, 636, 636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838,
  838, 531, 1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557,
  863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390,
  337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278,
  579, 278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592,
  525, 636, 337, 636, 838,
];

const bold = [
  348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380,
  365, 696, 696, 696, 696, 696, 696, 696, 696, 696, 696, 400, 400, 838, 838,
  838, 580, 1000, 774, 762, 734, 830, 683, 683, 821, 837, 372, 372, 775, 637,
  995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771, 724, 725, 457,
  365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343,
  665, 343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652,
  582, 712, 365, 712, 838,
];

/** Headroom for faces a little wider than the measured one. */
const slack = 1.06;

/**
 * Approximate rendered width of `text` in px at `size` px.
 *
 * @example
 * ```ts
 * textWidth('authorizing', 12, true); // ≈ 83
 * ```
 *
 * @internal
 */
export function textWidth(text: string, size: number, isBold = false): number {
  const table = isBold ? bold : regular;
  let units = 0;
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (code >= 32 && code <= 126) units += table[code - 32] ?? 1000;
    // East Asian scripts and emoji take a full em; other letters about
    // as much as a wide Latin one.
    else if (code >= 0x2e80) units += 1000;
    else units += 760;
  }
  return (units / 1000) * size * slack;
}
