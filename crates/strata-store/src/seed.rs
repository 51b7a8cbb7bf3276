//! The demo catalog: a deterministic set of products, built from small per-category tables of
//! styles and items, so that a fresh `strata up` has a shop worth browsing and benchmarks see the
//! same data on every run.

use crate::StoreError;
use crate::products::NewProduct;
use crate::store::{Store, dispatch};

/// An item a category sells: its name, a base price in cents and what it is for.
struct Item {
    name: &'static str,
    base_cents: i64,
    blurb: &'static str,
}

/// A variant of every item in a category, with its price factor in percent.
struct Style {
    name: &'static str,
    price_percent: i64,
    blurb: &'static str,
}

/// One category of the demo shop.
struct Category {
    slug: &'static str,
    sku_prefix: &'static str,
    styles: &'static [Style],
    items: &'static [Item],
}

const fn item(name: &'static str, base_cents: i64, blurb: &'static str) -> Item {
    Item {
        name,
        base_cents,
        blurb,
    }
}

const fn style(name: &'static str, price_percent: i64, blurb: &'static str) -> Style {
    Style {
        name,
        price_percent,
        blurb,
    }
}

/// Six categories of four styles times three items: 72 products.
const CATALOG: &[Category] = &[
    Category {
        slug: "books",
        sku_prefix: "BOOK",
        styles: &[
            style("Pocket", 70, "Small enough for a coat pocket."),
            style(
                "Illustrated",
                130,
                "Full-colour illustrations on every spread.",
            ),
            style("Annotated", 115, "With notes that explain the background."),
            style("Collector's", 180, "Cloth-bound with a ribbon marker."),
        ],
        items: &[
            item(
                "Cookbook",
                2499,
                "Weeknight recipes that need one pan and thirty minutes.",
            ),
            item(
                "Mystery Novel",
                1499,
                "A country-house whodunit with a twist in the last chapter.",
            ),
            item(
                "Field Guide to Birds",
                2999,
                "Identifies 400 species by shape, song and habitat.",
            ),
        ],
    },
    Category {
        slug: "electronics",
        sku_prefix: "ELEC",
        styles: &[
            style("Compact", 80, "Fits in one hand."),
            style("Travel", 100, "Comes with a protective carry case."),
            style("Pro", 150, "Tuned for all-day professional use."),
            style("Studio", 190, "Reference-grade components throughout."),
        ],
        items: &[
            item(
                "Bluetooth Speaker",
                4999,
                "Twelve hours of clear sound on one charge.",
            ),
            item(
                "USB-C Charger",
                2499,
                "Charges a laptop and a phone at once.",
            ),
            item(
                "Noise-Cancelling Headphones",
                12999,
                "Quiets trains, planes and open offices.",
            ),
        ],
    },
    Category {
        slug: "kitchen",
        sku_prefix: "KTCH",
        styles: &[
            style("Everyday", 80, "Dishwasher safe."),
            style("Classic", 100, "A design that has not changed in decades."),
            style("Professional", 145, "Built to restaurant standards."),
            style(
                "Heritage",
                175,
                "Made by a family workshop, with a lifetime warranty.",
            ),
        ],
        items: &[
            item(
                "Chef's Knife",
                5999,
                "A 20 cm blade for chopping, slicing and dicing.",
            ),
            item(
                "Cast Iron Skillet",
                3999,
                "Pre-seasoned and oven safe to 260 °C.",
            ),
            item(
                "Pour-Over Coffee Set",
                3499,
                "Dripper, carafe and filters for two cups.",
            ),
        ],
    },
    Category {
        slug: "garden",
        sku_prefix: "GRDN",
        styles: &[
            style("Compact", 75, "Ideal for balconies and small plots."),
            style("Ergonomic", 110, "Shaped to spare wrists and backs."),
            style("Galvanised", 125, "Will not rust through a wet winter."),
            style("Heavy-Duty", 160, "Made for allotments and market gardens."),
        ],
        items: &[
            item(
                "Pruning Shears",
                2299,
                "Bypass blades that cut stems cleanly up to 2 cm.",
            ),
            item(
                "Watering Can",
                1899,
                "Nine litres with a detachable fine rose.",
            ),
            item("Raised Bed Kit", 8999, "Tool-free assembly, 120 by 60 cm."),
        ],
    },
    Category {
        slug: "toys",
        sku_prefix: "TOYS",
        styles: &[
            style(
                "Starter",
                70,
                "A gentle introduction for ages three and up.",
            ),
            style("Classic", 100, "The version parents remember."),
            style("Rainbow", 115, "Bright, child-safe paints."),
            style("Deluxe", 170, "Extra pieces and a storage box."),
        ],
        items: &[
            item(
                "Wooden Train Set",
                4499,
                "Track, bridge and three carriages in beech wood.",
            ),
            item(
                "Building Blocks",
                2999,
                "Interlocking blocks in six shapes.",
            ),
            item(
                "Jigsaw Puzzle",
                1999,
                "A thousand pieces that make a harbour at dusk.",
            ),
        ],
    },
    Category {
        slug: "outdoor",
        sku_prefix: "OUTD",
        styles: &[
            style("Trail", 85, "Light enough for day hikes."),
            style(
                "Ultralight",
                140,
                "Every gram counted for long-distance trips.",
            ),
            style("Weatherproof", 125, "Taped seams keep out driving rain."),
            style("Family", 160, "Roomy enough to share."),
        ],
        items: &[
            item(
                "Camping Tent",
                14999,
                "Pitches in five minutes with colour-coded poles.",
            ),
            item(
                "Hiking Backpack",
                8999,
                "Adjustable back system and a rain cover.",
            ),
            item(
                "Headlamp",
                2499,
                "Three hundred lumens with a red night mode.",
            ),
        ],
    },
];

/// Rounds a price in cents to the shop's usual `x.99` ending, never below 99 cents.
fn shop_price(cents: i64) -> i64 {
    let whole = (cents + 50) / 100;
    (whole.max(1) * 100) - 1
}

/// The demo catalog, identical on every call: category by category, style by style.
pub fn demo_catalog() -> Vec<NewProduct> {
    let mut products = Vec::new();
    let mut index = 0_i64;
    for category in CATALOG {
        let mut number = 0_i64;
        for style in category.styles {
            for item in category.items {
                number += 1;
                index += 1;
                products.push(NewProduct {
                    sku: format!("{}-{number:03}", category.sku_prefix),
                    name: format!("{} {}", style.name, item.name),
                    description: format!("{} {}", item.blurb, style.blurb),
                    category: category.slug.to_owned(),
                    price_cents: shop_price(item.base_cents * style.price_percent / 100),
                    // A spread of stock levels, some scarce (to show sell-outs), none empty.
                    stock: 3 + (index * 37) % 118,
                });
            }
        }
    }
    products
}

impl Store {
    /// Inserts the [demo catalog](demo_catalog) when the `products` table is empty and returns
    /// how many products were inserted (0 when it already had products).
    ///
    /// Safe when several processes start at once: the check and the inserts run in one
    /// transaction, and inserts skip skus that already exist (`ON CONFLICT (sku) DO NOTHING`),
    /// so racing seeders together insert each product once.
    ///
    /// # Errors
    /// When the database cannot be written.
    pub async fn seed_demo_catalog(&self) -> Result<u64, StoreError> {
        let catalog = demo_catalog();
        let begin = self.dialect().begin_write();
        let inserted = dispatch!(self, pool => {
            let mut tx = pool.begin_with(begin).await?;
            let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
                .fetch_one(&mut *tx)
                .await?;
            let mut inserted = 0_u64;
            if existing == 0 {
                for product in &catalog {
                    inserted += sqlx::query(
                        "INSERT INTO products \
                         (sku, name, description, category, price_cents, stock) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sku) DO NOTHING",
                    )
                    .bind(&product.sku)
                    .bind(&product.name)
                    .bind(&product.description)
                    .bind(&product.category)
                    .bind(product.price_cents)
                    .bind(product.stock)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
            }
            tx.commit().await?;
            inserted
        });
        // A restart finds the catalog there: only a seed that inserted something is news.
        if inserted > 0 {
            tracing::info!(inserted, "demo catalog seeded");
        } else {
            tracing::debug!("demo catalog already seeded");
        }
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    #[test]
    fn catalog_is_large_varied_and_valid() {
        let catalog = demo_catalog();
        assert!(catalog.len() >= 60, "only {} products", catalog.len());
        let mut per_category = BTreeMap::new();
        for p in &catalog {
            *per_category.entry(p.category.as_str()).or_insert(0) += 1;
            assert!(p.price_cents > 0 && p.price_cents % 100 == 99, "{p:?}");
            assert!(p.stock > 0, "{p:?}");
            assert!(!p.name.is_empty() && !p.description.is_empty(), "{p:?}");
        }
        assert!(per_category.len() >= 6, "{per_category:?}");
        assert!(per_category.values().all(|&n| n >= 10), "{per_category:?}");
    }

    #[test]
    fn skus_and_names_are_unique() {
        let catalog = demo_catalog();
        let skus: HashSet<_> = catalog.iter().map(|p| &p.sku).collect();
        let names: HashSet<_> = catalog.iter().map(|p| &p.name).collect();
        assert_eq!(skus.len(), catalog.len());
        assert_eq!(names.len(), catalog.len());
    }

    #[test]
    fn catalog_is_deterministic() {
        assert_eq!(demo_catalog(), demo_catalog());
        let first = &demo_catalog()[0];
        assert_eq!(first.sku, "BOOK-001");
        assert_eq!(first.name, "Pocket Cookbook");
        // 70% of 24.99 is 17.49, which the shop rounds to 17 and prices at 16.99.
        assert_eq!(first.price_cents, 1699);
    }

    #[test]
    fn prices_end_in_99() {
        assert_eq!(shop_price(1749), 1699);
        assert_eq!(shop_price(1750), 1799);
        assert_eq!(shop_price(10), 99);
    }
}
