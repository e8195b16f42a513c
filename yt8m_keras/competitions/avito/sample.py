"""Sample Avito Demand Prediction Challenge data in Kaggle's own layout: CSVs and JPEGs.

Used by `yt8m-keras sample avito --output DIR [--ads N] [--seed S] [--zip-images]`, and by
the quickstart, through `write_sample`. What Kaggle shipped, and what this writes:

    train.csv   item_id,user_id,region,city,parent_category_name,category_name,param_1,param_2,
                param_3,title,description,price,item_seq_number,activation_date,user_type,image,
                image_top_1,deal_probability
    test.csv    the same columns without deal_probability
    train_jpg/<image>.jpg  test_jpg/<image>.jpg
                or, with `zip_images`, Kaggle's archives train_jpg.zip and test_jpg.zip holding
                data/competition_files/train_jpg/<image>.jpg (test_jpg/... likewise)
    test_truth.csv  item_id,deal_probability: NOT shipped by Kaggle (see below)

An ad is a Russian classified: a seller (`user_id`, 1-20 ads each, Private, Company or Shop,
in one region and city) sells an item of a category (`CATEGORIES`: parent > category, as
"Личные вещи" > "Детская одежда и обувь") with up to three params, a title and a description
built from the category's own words, a price in roubles around the category's median, and
usually a picture. What the files look like, and why:

- Cyrillic text everywhere; descriptions of one to six sentences with commas, quoted brand
  names ('Фирма "Reima".') and, in some, newlines; a few descriptions are empty;
- param_2 and param_3 are empty for the categories that have none, param_1 for a few;
  `PRICE_MISSING` of the prices are empty; `NO_IMAGE` of the ads have no picture (empty
  `image` and `image_top_1`);
- ids are 12 hex characters (`item_id`, `user_id`), picture names 64; `image_top_1` is an
  integer code from a range of the category; `item_seq_number` counts a seller's ads;
  `activation_date` lies within two weeks, 2017-03-15 to 2017-03-28;
- pictures are small JPEGs (48-96 px on a side; landscape, portrait and square), a backdrop
  with muted clutter and, in some, a red-orange object that may sit off centre, so a
  centre crop of an elongated picture can lose it where padding to a square keeps it
  (`OFF_CENTRE`);
- `BROKEN` of the pictures are broken (a truncated JPEG or garbage bytes: they do not
  decode) and `MISSING` are named in the CSV but absent from the folder, as a few real ones are.

The target. Each ad gets a latent score (`SIGNAL` names every term):

    score = base of the category (`CATEGORIES[...]["base"]`)
          - 0.8 * (log price - log median price of the category)   (cheaper sells more)
          - 0.3 if the price is empty
          + the effect of each signal word in the title or description (`WORD_EFFECTS`:
            "срочно" (urgent), "новый"/"новая"/"новое"/"новые" (new), "торг" (haggling welcome)
            raise it, "б/у" (second-hand) lowers it; `WORD_PATTERNS` finds them)
          + 0.5 * picture quality (the picture's brightness; a dark photo sells less)
          + 0.7 if the picture shows the red-orange object, - 0.5 if the ad has no picture
          + seller type (`USER_TYPES`) + a seller's own effect (N(0, 0.3), shared by the ads)
          + noise N(0, 0.5)

and deal_probability is 0 with probability sigmoid(-2.5 * (score - 0.6)) (a point mass at 0
for most low-score ads: ~60 % zeros overall), else sigmoid(score - 0.5 + N(0, 0.25)); rounded
to 5 decimals as Kaggle's are. So a small model learns it from the category, the price, the words
and the picture, and the seller helps a model that sees other ads of the same user.

Deliberate differences from the real data: 20 categories in 8 parents (47 and 9 in the
real data), a few hundred words, tiny pictures; every date in one two-week window and a
random (not a time) split of about 80/20, so sellers appear in both files; and the sample
writes the hidden test targets to `test_truth.csv` so a quickstart can score its
predictions (nothing in training reads that file). Rows are sorted by item_id. The same
seed writes the same bytes (archives included).

Example:

>>> paths = write_sample("/tmp/avito_raw", ads=200)
>>> sorted(paths)
['test_csv', 'test_images', 'test_truth', 'train_csv', 'train_images']
"""

import datetime
import io
import math
import os
import re
import zipfile
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image

from yt8m_keras.data.sample_files import write_csv, write_jpegs

TRAIN_COLUMNS = ("item_id", "user_id", "region", "city", "parent_category_name", "category_name", "param_1",
                 "param_2", "param_3", "title", "description", "price", "item_seq_number", "activation_date",
                 "user_type", "image", "image_top_1", "deal_probability")
TEST_COLUMNS = TRAIN_COLUMNS[:-1]
TRUTH_COLUMNS = ("item_id", "deal_probability")
TEST_SHARE = 0.2
MIN_ADS = 20
ZIP_PREFIX = "data/competition_files"  # where Kaggle's archives put the pictures
FIRST_DATE, DAYS = datetime.date(2017, 3, 15), 14

# region -> its cities (the first the largest).
REGIONS = {
    "Свердловская область": ("Екатеринбург", "Нижний Тагил", "Каменск-Уральский", "Первоуральск"),
    "Самарская область": ("Самара", "Тольятти", "Сызрань", "Новокуйбышевск"),
    "Ростовская область": ("Ростов-на-Дону", "Таганрог", "Шахты", "Батайск"),
    "Татарстан": ("Казань", "Набережные Челны", "Альметьевск", "Нижнекамск"),
    "Краснодарский край": ("Краснодар", "Сочи", "Новороссийск", "Армавир"),
    "Нижегородская область": ("Нижний Новгород", "Дзержинск", "Арзамас"),
    "Башкортостан": ("Уфа", "Стерлитамак", "Салават"),
    "Челябинская область": ("Челябинск", "Магнитогорск", "Златоуст"),
    "Новосибирская область": ("Новосибирск", "Бердск", "Искитим"),
    "Воронежская область": ("Воронеж", "Борисоглебск", "Россошь"),
    "Пермский край": ("Пермь", "Березники", "Соликамск"),
    "Иркутская область": ("Иркутск", "Братск", "Ангарск"),
}
REGION_WEIGHTS = (0.13, 0.1, 0.1, 0.1, 0.1, 0.09, 0.08, 0.08, 0.07, 0.06, 0.05, 0.04)

# category -> parent, share of the ads, base score, median price (roubles), params (param_1,
# param_2 and param_3 options; an empty tuple leaves the column empty), title nouns with their
# grammatical gender (m, f, n, p: plural), gender-free title extras, description sentences,
# brands (quoted in descriptions). Its image_top_1 codes are `IMAGE_TOP_1[category]`.
CATEGORIES: Dict[str, Dict] = {
    "Детская одежда и обувь": dict(
        parent="Личные вещи", share=0.12, base=0.3, price=500,
        params=(("Для мальчиков", "Для девочек"), ("Обувь", "Верхняя одежда", "Трикотаж", "Брюки", "Комбинезоны"),
                ("86-92 см (1-2 года)", "98-104 см (2-4 года)", "110-116 см (4-6 лет)", "22", "25", "28")),
        nouns=(("Куртка", "f"), ("Комбинезон", "m"), ("Ботинки", "p"), ("Кроссовки", "p"), ("Платье", "n"),
               ("Костюм", "m"), ("Сапоги", "p"), ("Кофта", "f")),
        extras=("зимний", "демисезон", "на девочку", "на мальчика", "р. 98", "р. 25", "Reima", "Kerry"),
        sentences=("Носили один сезон, без пятен и дыр.", "Размер соответствует, рост до 104 см.",
                   "Тёплый, на флисе, капюшон отстёгивается.", "Отдаю в связи с тем, что выросли.",
                   "Стирали аккуратно, цвет не потерял."),
        brands=("Reima", "Kerry", "Crockid", "Котофей", "Acoola")),
    "Одежда, обувь, аксессуары": dict(
        parent="Личные вещи", share=0.1, base=-0.3, price=1000,
        params=(("Женская одежда", "Мужская одежда", "Женская обувь", "Аксессуары"),
                ("Платья и юбки", "Верхняя одежда", "Джинсы", "Другое"), ("42–44 (S)", "46–48 (M)", "50 (L)", "38")),
        nouns=(("Пальто", "n"), ("Платье", "n"), ("Джинсы", "p"), ("Сумка", "f"), ("Туфли", "p"),
               ("Пуховик", "m"), ("Шуба", "f")),
        extras=("женское", "мужская", "р. 44", "р. 38", "Zara", "Mango", "из кожи"),
        sentences=("Надевала пару раз, не подошёл размер.", "Натуральная кожа, фурнитура целая.",
                   "Размер 44-46, рост 170.", "Цвет как на фото, ткань плотная.", "Очень красиво сидит."),
        brands=("Zara", "Mango", "Gloria Jeans", "Ecco", "Befree")),
    "Товары для детей и игрушки": dict(
        parent="Личные вещи", share=0.08, base=0.4, price=1500,
        params=(("Детские коляски", "Игрушки", "Автомобильные кресла", "Постельные принадлежности"), (), ()),
        nouns=(("Коляска", "f"), ("Автокресло", "n"), ("Кроватка", "f"), ("Конструктор", "m"),
               ("Кокон для сна", "m"), ("Велосипед детский", "m")),
        extras=("2 в 1", "0-18 кг", "Lego", "Chicco", "для малыша"),
        sentences=("Всё работает, колёса целые.", "Пользовались меньше месяца.",
                   "В комплекте дождевик и москитная сетка.", "Все детали на месте.", "Крепится ремнями или Isofix."),
        brands=("Chicco", "Lego", "Tutis", "Happy Baby", "Cybex")),
    "Часы и украшения": dict(
        parent="Личные вещи", share=0.03, base=-0.9, price=2000,
        params=(("Ювелирные изделия", "Бижутерия", "Часы"), (), ()),
        nouns=(("Кольцо", "n"), ("Серьги", "p"), ("Часы", "p"), ("Цепочка", "f"), ("Браслет", "m")),
        extras=("золото 585", "серебро", "Casio", "с камнем"),
        sentences=("Проба 585, вес 2,1 г.", "Есть коробочка и бирка.", "Механизм исправен, ход точный.",
                   "Размер 17,5."),
        brands=("Casio", "Sokolov", "Pandora", "Orient")),
    "Мебель и интерьер": dict(
        parent="Для дома и дачи", share=0.07, base=-0.1, price=3500,
        params=(("Шкафы и комоды", "Кровати, диваны и кресла", "Столы и стулья", "Текстиль и ковры"), (), ()),
        nouns=(("Диван", "m"), ("Шкаф-купе", "m"), ("Стол", "m"), ("Кровать", "f"), ("Комод", "m"),
               ("Кресло", "n"), ("Стулья", "p")),
        extras=("угловой", "раскладной", "из массива", "IKEA", "2 м"),
        sentences=("Размеры 200х90 см.", "Механизм еврокнижка, ящик для белья.", "Самовывоз, разберём сами.",
                   "Без сколов и царапин.", "Обивка чистая, без запаха."),
        brands=("IKEA", "Шатура", "Hoff", "Лазурит")),
    "Бытовая техника": dict(
        parent="Для дома и дачи", share=0.06, base=0.1, price=5000,
        params=(("Для кухни", "Для дома", "Климатическое оборудование"),
                ("Холодильники и морозильные камеры", "Стиральные машины", "Пылесосы", "Плиты"), ()),
        nouns=(("Холодильник", "m"), ("Стиральная машина", "f"), ("Пылесос", "m"), ("Микроволновка", "f"),
               ("Плита", "f")),
        extras=("Indesit", "Samsung", "Bosch", "5 кг", "двухкамерный"),
        sentences=("Всё работает исправно.", "Загрузка 5 кг, отжим 1000 об.", "Доставка по городу за отдельную плату.",
                   "Высота 185 см, No Frost.", "Проверка при покупке."),
        brands=("Indesit", "Samsung", "Bosch", "Atlant", "LG")),
    "Ремонт и строительство": dict(
        parent="Для дома и дачи", share=0.05, base=-0.5, price=2000,
        params=(("Стройматериалы", "Инструменты", "Сантехника и сауна", "Двери"), (), ()),
        nouns=(("Перфоратор", "m"), ("Дверь межкомнатная", "f"), ("Ламинат", "m"), ("Унитаз", "m"),
               ("Шуруповёрт", "m"), ("Плитка", "f")),
        extras=("Makita", "Bosch", "33 класс", "остатки", "2 аккумулятора"),
        sentences=("Остатки после ремонта, 12 кв.м.", "Два аккумулятора и зарядка в кейсе.",
                   "Цена за штуку.", "Полотно 80 см, с коробкой и наличниками."),
        brands=("Makita", "Bosch", "Интерскол", "Cersanit", "Kronospan")),
    "Телефоны": dict(
        parent="Бытовая электроника", share=0.07, base=-0.2, price=6000,
        params=(("iPhone", "Samsung", "Xiaomi", "Другие марки", "Аксессуары"), (), ()),
        nouns=(("Телефон", "m"), ("Смартфон", "m"), ("iPhone 6s 64gb", "m"), ("Samsung Galaxy S7", "m"),
               ("Чехол", "m")),
        extras=("32 Гб", "64 Гб", "чёрный", "золотой", "Redmi Note 4"),
        sentences=("Экран без царапин, аккумулятор держит день.", "Полный комплект, коробка, документы.",
                   "Сим-карта любая, не залочен.", "Есть небольшие потёртости на корпусе.",
                   "Отпечаток работает."),
        brands=("Apple", "Samsung", "Xiaomi", "Huawei", "Meizu")),
    "Аудио и видео": dict(
        parent="Бытовая электроника", share=0.04, base=-0.4, price=3000,
        params=(("Телевизоры и проекторы", "Наушники", "Акустика, колонки, сабвуферы"), (), ()),
        nouns=(("Телевизор", "m"), ("Наушники", "p"), ("Колонка", "f"), ("Проектор", "m")),
        extras=("32 дюйма", "Smart TV", "беспроводные", "JBL", "Sony"),
        sentences=("Диагональ 81 см, Full HD.", "Пульт в комплекте.", "Звук чистый, бас отличный.",
                   "Bluetooth, держит заряд 8 часов."),
        brands=("Sony", "JBL", "LG", "Philips", "Samsung")),
    "Ноутбуки": dict(
        parent="Бытовая электроника", share=0.02, base=-0.3, price=15000,
        params=((), (), ()),
        nouns=(("Ноутбук", "m"), ("Нетбук", "m"), ("Ультрабук", "m")),
        extras=("Asus", "Lenovo", "HP", "i5", "8 Гб"),
        sentences=("Процессор Intel Core i5, 8 Гб памяти.", "Батарея держит 3 часа.",
                   "Windows 10 установлена, всё летает.", "Зарядка родная."),
        brands=("Asus", "Lenovo", "HP", "Acer", "Dell")),
    "Игры, приставки и программы": dict(
        parent="Бытовая электроника", share=0.02, base=0.0, price=3000,
        params=(("Игровые приставки", "Игры для приставок", "Компьютерные игры"), (), ()),
        nouns=(("Приставка", "f"), ("Диск", "m"), ("Джойстик", "m"), ("Игра", "f")),
        extras=("PS4", "Xbox One", "Sony PlayStation 3", "500 Гб"),
        sentences=("Два джойстика и пять игр в комплекте.", "Не прошита.", "Диск без царапин.",
                   "Обмен на другие игры."),
        brands=("Sony", "Microsoft", "Nintendo")),
    "Автомобили": dict(
        parent="Транспорт", share=0.04, base=-0.6, price=300000,
        params=(("С пробегом", "Новый"), ("ВАЗ (LADA)", "Toyota", "Hyundai", "Ford", "Renault"),
                ("Granta", "Camry", "Solaris", "Focus", "Logan", "2114 Samara")),
        nouns=(("ВАЗ 2114 Samara", "m"), ("Toyota Camry", "f"), ("Hyundai Solaris", "m"), ("Ford Focus", "m"),
               ("Renault Logan", "m")),
        extras=("2012", "2008", "1.6 MT", "седан", "хэтчбек"),
        sentences=("Один хозяин, ПТС оригинал.", "Пробег 120 000 км, вложений не требует.",
                   "Зимняя резина в подарок.", "Не битая, не крашеная.", "Кондиционер, подогрев сидений."),
        brands=("Лада", "Toyota", "Hyundai", "Ford", "Renault")),
    "Запчасти и аксессуары": dict(
        parent="Транспорт", share=0.06, base=-0.2, price=3000,
        params=(("Шины, диски и колёса", "Запчасти", "Аудио- и видеотехника"), ("Шины", "Диски", "Для автомобилей"),
                ()),
        nouns=(("Колёса", "p"), ("Шины", "p"), ("Диски", "p"), ("Фара", "f"), ("Магнитола", "f")),
        extras=("R15", "R16", "зимние", "летние", "комплект 4 шт"),
        sentences=("Протектор 6 мм, без грыж и порезов.", "Комплект 4 шт.", "Подойдут на Ладу и Рено.",
                   "Снято с рабочей машины."),
        brands=("Nokian", "Michelin", "Pirelli", "Bosch", "Pioneer")),
    "Квартиры": dict(
        parent="Недвижимость", share=0.03, base=-1.0, price=1800000,
        params=(("Продам", "Сдам"), ("Вторичка", "Новостройка", "На длительный срок"),
                ("1-к квартира", "2-к квартира", "3-к квартира", "Студия")),
        nouns=(("Квартира", "f"), ("Студия", "f")),
        extras=("1-к, 33 м², 2/5 эт.", "2-к, 54 м², 7/9 эт.", "3-к, 68 м², 1/5 эт."),
        sentences=("Тёплая, светлая, окна во двор.", "Рядом школа, садик, остановка.",
                   "Один собственник, документы готовы.", "Пластиковые окна, балкон застеклён."),
        brands=("ЖК Солнечный", "ЖК Парковый")),
    "Дома, дачи, коттеджи": dict(
        parent="Недвижимость", share=0.02, base=-1.1, price=1500000,
        params=(("Продам", "Сдам"), ("Дом", "Дача", "Коттедж"), ()),
        nouns=(("Дом", "m"), ("Дача", "f"), ("Коттедж", "m")),
        extras=("60 м² на участке 6 сот.", "120 м², 10 сот.", "у реки"),
        sentences=("Баня, скважина, свет.", "Участок ухоженный, плодовые деревья.",
                   "Газ по границе участка.", "До остановки 5 минут."),
        brands=("СНТ Рассвет", "СНТ Берёзка")),
    "Спорт и отдых": dict(
        parent="Хобби и отдых", share=0.04, base=0.0, price=3000,
        params=(("Велосипеды", "Зимние виды спорта", "Фитнес и тренажёры"), (), ()),
        nouns=(("Велосипед", "m"), ("Лыжи", "p"), ("Коньки", "p"), ("Тренажёр", "m"), ("Самокат", "m")),
        extras=("Stels", "21 скорость", "р. 38", "складной"),
        sentences=("Рама 18 дюймов, 21 скорость.", "Катались один сезон.", "Тормоза дисковые.",
                   "Лыжи 180 см с креплениями."),
        brands=("Stels", "Forward", "Fischer", "Atemi")),
    "Книги и журналы": dict(
        parent="Хобби и отдых", share=0.02, base=-0.7, price=300,
        params=(("Книги", "Учебная литература", "Журналы, газеты, брошюры"), (), ()),
        nouns=(("Книга", "f"), ("Учебник", "m"), ("Книги", "p"), ("Энциклопедия", "f")),
        extras=("5 класс", "серия", "для детей"),
        sentences=("Состояние хорошее, страницы чистые.", "Продаю всей серией.", "Твёрдый переплёт.",
                   "Издание 2015 года."),
        brands=("Эксмо", "АСТ", "Просвещение", "Росмэн")),
    "Кошки": dict(
        parent="Животные", share=0.03, base=0.2, price=1000,
        params=(("Британская", "Шотландская", "Другая"), (), ()),
        nouns=(("Котёнок", "m"), ("Котята", "p"), ("Кошечка", "f")),
        extras=("британский", "в добрые руки", "2 месяца", "к лотку приучен"),
        sentences=("К лотку приучен, кушает сам.", "Привит по возрасту.", "Очень ласковый.",
                   "Мама на фото."),
        brands=("питомник Снежный барс",)),
    "Собаки": dict(
        parent="Животные", share=0.02, base=0.1, price=5000,
        params=(("Немецкая овчарка", "Той-терьер", "Хаски", "Другая"), (), ()),
        nouns=(("Щенок", "m"), ("Щенки", "p"), ("Собака", "f")),
        extras=("хаски", "с документами", "2 месяца", "мальчик"),
        sentences=("Документы РКФ, клеймо.", "Привиты, обработаны от паразитов.", "Родители на фото.",
                   "Очень активный и умный."),
        brands=("питомник Северный ветер",)),
    "Предложение услуг": dict(
        parent="Услуги", share=0.08, base=0.5, price=1000,
        params=(("Ремонт, строительство", "Транспорт, перевозки", "Красота, здоровье", "Обучение, курсы"),
                ("Сантехника", "Электрика", "Грузчики", "Маникюр, педикюр", ""), ()),
        nouns=(("Ремонт квартир", "m"), ("Грузоперевозки", "p"), ("Маникюр", "m"), ("Репетитор", "m"),
               ("Сантехник", "m")),
        extras=("под ключ", "недорого", "Газель", "с выездом", "по математике"),
        sentences=("Опыт работы 10 лет.", "Работаем без выходных.", "Выезд по городу и области.",
                   "Качественно и в срок.", "Первое занятие бесплатно."),
        brands=("Мастер на час", "ГрузовичкоФ", "Студия Nail")),
}
# category -> (lowest, highest + 1) image_top_1 code: consecutive blocks within the real 0-3066.
IMAGE_TOP_1 = {name: (150 * i, 150 * i + 150) for i, name in enumerate(CATEGORIES)}
PARENTS = tuple(dict.fromkeys(c["parent"] for c in CATEGORIES.values()))

# user_type -> (share of sellers, score effect, fewest and most ads a seller of the type posts).
USER_TYPES = {"Private": (0.78, 0.2, 1, 6), "Company": (0.15, -0.1, 2, 20), "Shop": (0.07, -0.4, 5, 20)}
MAX_USER_ADS = 20

# Signal words: effect on the score, and the pattern (on lower-cased title + description) that finds them.
WORD_EFFECTS = {"срочно": 0.6, "новый": 0.5, "торг": 0.4, "б/у": -0.6}
WORD_PATTERNS = {"срочно": r"срочно", "новый": r"(?<!\w)нов(ый|ая|ое|ые)(?!\w)", "торг": r"(?<!\w)торг(?!\w)",
                 "б/у": r"(?<!\w)б/у(?!\w)"}
WORD_SHARES = {"срочно": 0.15, "новый": 0.2, "торг": 0.2, "б/у": 0.25}  # "новый" and "б/у" never together
NEW_FORMS = {"m": "новый", "f": "новая", "n": "новое", "p": "новые"}

PRICE_SLOPE = -0.8  # per unit of log price above the category median
PRICE_SIGMA = 0.6  # log-normal spread of prices around the median
PRICE_MISSING, PRICE_MISSING_EFFECT = 0.05, -0.3
NO_IMAGE, NO_IMAGE_EFFECT = 0.15, -0.5
OBJECT, OBJECT_EFFECT = 0.45, 0.7  # share of pictures showing the red-orange object, its effect
OFF_CENTRE = 0.3  # share of the objects in elongated pictures put where a centre crop cuts them off
QUALITY_EFFECT = 0.5  # per standard deviation of picture quality (brightness)
BROKEN, MISSING = 0.02, 0.01  # of the pictures: broken bytes, absent from the folder
EMPTY_DESCRIPTION = 0.03
MULTILINE = 0.3  # share of descriptions whose sentences are split by newlines
USER_SIGMA, NOISE_SIGMA, VALUE_SIGMA, VALUE_SHIFT = 0.3, 0.4, 0.25, -0.5
ZERO_SLOPE, ZERO_CENTER = 2.5, 0.6  # P(deal_probability = 0) = sigmoid(-ZERO_SLOPE * (score - ZERO_CENTER))
MIN_SIDE, MAX_SIDE = 48, 96

SIGNAL = {
    "category": "CATEGORIES[category]['base'] (-1.1 .. 0.5)",
    "price": f"{PRICE_SLOPE} * (log price - log CATEGORIES[category]['price']); {PRICE_MISSING_EFFECT} if empty",
    "words": "WORD_EFFECTS of each word WORD_PATTERNS finds in the lower-cased title + description",
    "picture": f"{QUALITY_EFFECT} * quality (mean brightness ~ 125 + 45 * quality); {OBJECT_EFFECT} if the "
               f"red-orange object is shown; {NO_IMAGE_EFFECT} without a picture",
    "seller": f"USER_TYPES[user_type][1] + N(0, {USER_SIGMA}) per user_id",
    "noise": f"N(0, {NOISE_SIGMA})",
    "target": f"0 with probability sigmoid(-{ZERO_SLOPE} * (score - {ZERO_CENTER})), "
              f"else sigmoid(score {VALUE_SHIFT:+} + N(0, {VALUE_SIGMA})), rounded to 5 decimals",
}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _hex_ids(rng: np.random.Generator, count: int, chars: int, taken: set) -> List[str]:
    ids = []
    while len(ids) < count:
        value = rng.bytes(chars // 2).hex()
        if value not in taken:
            taken.add(value)
            ids.append(value)
    return ids


def _nice_price(value: float) -> float:
    """Rounded as sellers write prices: 2 significant digits (1 500, 35 000, 1 800 000)."""
    digits = max(0, int(math.floor(math.log10(max(value, 1.0)))) - 1)
    return float(max(10, round(value / 10 ** digits) * 10 ** digits))


def _users(rng: np.random.Generator, ads: int) -> List[Dict]:
    types = list(USER_TYPES)
    shares = np.array([USER_TYPES[t][0] for t in types])
    names = list(CATEGORIES)
    category_shares = np.array([CATEGORIES[c]["share"] for c in names])
    regions = list(REGIONS)
    region_shares = np.array(REGION_WEIGHTS)
    users, left = [], ads
    while left > 0:
        user_type = types[int(rng.choice(len(types), p=shares / shares.sum()))]
        _, effect, low, high = USER_TYPES[user_type]
        count = min(left, int(rng.integers(low, high + 1)))
        left -= count
        region = regions[int(rng.choice(len(regions), p=region_shares / region_shares.sum()))]
        cities = REGIONS[region]
        users.append({
            "user_type": user_type, "ads": count, "region": region,
            "city": cities[0] if rng.random() < 0.6 else _pick(rng, cities[1:]),
            "category": names[int(rng.choice(len(names), p=category_shares / category_shares.sum()))],
            "effect": effect + float(rng.normal(0.0, USER_SIGMA)),
            "first_seq": int(rng.lognormal(3.0 if user_type == "Private" else 7.0, 1.2)) + 1,
        })
    return users


def _title(rng: np.random.Generator, noun: str, gender: str, category: Dict, words: Dict[str, bool],
           where: Dict[str, str]) -> str:
    parts = [noun]
    if words["новый"] and where["новый"] == "title":
        parts.append(NEW_FORMS[gender])
    if rng.random() < 0.6:
        parts.append(_pick(rng, category["extras"]))
    if words["б/у"] and where["б/у"] == "title":
        parts.append("б/у")
    title = " ".join(parts)
    if words["срочно"] and where["срочно"] == "title":
        title = _pick(rng, ("Срочно! ", "СРОЧНО ")) + title if rng.random() < 0.5 else title + ", срочно"
    if words["торг"] and where["торг"] == "title":
        title += ", торг"
    return title


def _description(rng: np.random.Generator, noun: str, gender: str, category: Dict, words: Dict[str, bool],
                 where: Dict[str, str]) -> str:
    # The signal words always reach the text (title or description), even in an "empty" description's ad.
    needed = [w for w in WORD_EFFECTS if words[w] and where[w] == "description"]
    if not needed and rng.random() < EMPTY_DESCRIPTION:
        return ""
    # Openers that take the noun as it stands (the nominative), so no declension is needed.
    if category["parent"] == "Услуги":
        verb = _pick(rng, ("Предлагаю услуги:", "Услуги:", "Оказываем услуги:"))
    else:
        verb = _pick(rng, ("Продаются" if gender == "p" else "Продаётся", "В продаже:", "Продаю:"))
    opener = f"{verb} {noun[0].lower() + noun[1:]}"
    if rng.random() < 0.5:
        opener += ", " + _pick(rng, category["extras"]).rstrip(".")
    sentences = [opener + "."]
    count = int(rng.integers(0, 4))
    for i in rng.choice(len(category["sentences"]), size=min(count, len(category["sentences"])), replace=False):
        sentences.append(category["sentences"][int(i)])
    if rng.random() < 0.35:
        sentences.append(_pick(rng, ('Фирма "{}".', 'Производитель "{}", оригинал.', 'Марка: "{}".'))
                         .format(_pick(rng, category["brands"])))
    if "новый" in needed:
        sentences.append(_pick(rng, (f"Состояние: {NEW_FORMS['n']}, в упаковке.",
                                     f"{NEW_FORMS[gender].capitalize()}, ни разу не использовали.",
                                     f"Абсолютно {NEW_FORMS[gender]}, с биркой.")))
    if "б/у" in needed:
        sentences.append(_pick(rng, ("Б/у, в хорошем состоянии.", "Состояние б/у, есть следы использования.",
                                     "Б/у, небольшие потёртости.")))
    if "срочно" in needed:
        sentences.append(_pick(rng, ("Срочно!", "Продаю срочно в связи с переездом.", "Нужно продать срочно.")))
    if "торг" in needed:
        sentences.append(_pick(rng, ("Торг уместен.", "Небольшой торг.", "Торг при осмотре.")))
    if rng.random() < 0.5:
        sentences.append(_pick(rng, ("Звоните, пишите!", "Звонить после 18:00.", "Обмен не предлагать.",
                                     "Пишите в сообщения, на звонки не отвечаю.", "Самовывоз.")))
    order = [sentences[0]] + [sentences[int(i)] for i in 1 + rng.permutation(len(sentences) - 1)]
    return ("\n" if rng.random() < MULTILINE else " ").join(order)


def _ads(rng: np.random.Generator, users: List[Dict], user_ids: List[str]) -> List[Dict]:
    names = list(CATEGORIES)
    shares = np.array([CATEGORIES[c]["share"] for c in names])
    rows = []
    for user, user_id in zip(users, user_ids):
        days = sorted(int(d) for d in rng.integers(0, DAYS, size=user["ads"]))
        seq = user["first_seq"]
        for day in days:
            seq += int(rng.integers(1, 4))
            name = user["category"]
            if rng.random() >= 0.8:  # a seller mostly keeps to one category
                name = names[int(rng.choice(len(names), p=shares / shares.sum()))]
            category = CATEGORIES[name]
            p1, p2, p3 = (_pick(rng, options) if options else "" for options in category["params"])
            if p1 and rng.random() < 0.03:
                p1 = ""
            if p3 and rng.random() < 0.3:
                p3 = ""
            noun, gender = _pick(rng, category["nouns"])
            words = {w: bool(rng.random() < WORD_SHARES[w]) for w in WORD_EFFECTS}
            if words["новый"] and words["б/у"]:
                words[_pick(rng, ("новый", "б/у"))] = False
            where = {w: "title" if rng.random() < 0.35 else "description" for w in WORD_EFFECTS}
            median = category["price"]
            price = None
            if rng.random() >= PRICE_MISSING:
                price = _nice_price(median * math.exp(rng.normal(0.0, PRICE_SIGMA)))
            has_image = rng.random() >= NO_IMAGE
            quality = float(np.clip(rng.normal(), -2.2, 2.2))
            shows_object = bool(rng.random() < OBJECT)
            score = category["base"] + user["effect"] + float(rng.normal(0.0, NOISE_SIGMA))
            score += PRICE_MISSING_EFFECT if price is None else PRICE_SLOPE * math.log(price / median)
            score += sum(WORD_EFFECTS[w] for w in WORD_EFFECTS if words[w])
            if has_image:
                score += QUALITY_EFFECT * quality + (OBJECT_EFFECT if shows_object else 0.0)
            else:
                score += NO_IMAGE_EFFECT
            if rng.random() < _sigmoid(-ZERO_SLOPE * (score - ZERO_CENTER)):
                target = 0.0
            else:
                target = round(_sigmoid(score + VALUE_SHIFT + float(rng.normal(0.0, VALUE_SIGMA))), 5)
            rows.append({
                "user_id": user_id, "region": user["region"], "city": user["city"],
                "parent_category_name": category["parent"], "category_name": name,
                "param_1": p1, "param_2": p2, "param_3": p3,
                "title": _title(rng, noun, gender, category, words, where),
                "description": _description(rng, noun, gender, category, words, where),
                "price": "" if price is None else repr(price), "item_seq_number": str(seq),
                "activation_date": (FIRST_DATE + datetime.timedelta(days=day)).isoformat(),
                "user_type": user["user_type"],
                "image_top_1": str(int(rng.integers(*IMAGE_TOP_1[name]))) if has_image else "",
                "deal_probability": _format_target(target),
                "_image": has_image, "_quality": quality, "_object": shows_object,
            })
    return rows


def _format_target(value: float) -> str:
    text = f"{min(max(value, 0.0), 1.0):.5f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _size(rng: np.random.Generator) -> Tuple[int, int]:
    """(width, height): landscape mostly, some portrait and some square; elongated 1.2:1 to 2:1."""
    long_side = int(rng.integers(MIN_SIDE + 16, MAX_SIDE + 1))
    r = rng.random()
    if r < 0.15:
        return long_side, long_side
    short_side = max(MIN_SIDE, round(long_side / rng.uniform(1.2, 2.0)))
    return (short_side, long_side) if r < 0.4 else (long_side, short_side)


def render_picture(rng: np.random.Generator, quality: float, shows_object: bool, width: int, height: int) -> np.ndarray:
    """A uint8 [height, width, 3] photo: a lit backdrop, muted clutter, maybe the red-orange object.

    Brightness follows `quality` (mean ~ 125 + 45 * quality); the object's centre is anywhere
    in the picture, and for `OFF_CENTRE` of the objects in elongated pictures it lies in the
    ends of the long side, which a centre crop cuts off (padding to a square keeps it).
    """
    level = float(np.clip(125 + 45 * quality, 25, 235))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tint = rng.normal(0, 12, 3)
    slope = rng.normal(0, 0.25, 2)
    light = 1 + slope[0] * (xx / width - 0.5) + slope[1] * (yy / height - 0.5)
    image = (level + tint)[None, None, :] * light[..., None]
    for _ in range(int(rng.integers(1, 4))):  # muted clutter: grey, brown and blue-grey boxes and blobs
        grey = level * rng.uniform(0.6, 1.3)
        colour = np.array([grey, grey, grey]) + rng.normal(0, 10, 3)
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.4) * height
        if rng.random() < 0.5:
            mask = (np.abs(xx - x0) < w / 2) & (np.abs(yy - y0) < h / 2)
        else:
            mask = ((xx - x0) / (w / 2)) ** 2 + ((yy - y0) / (h / 2)) ** 2 < 1
        image[mask] = colour
    if shows_object:
        short = min(width, height)
        radius = rng.uniform(0.15, 0.28) * short
        cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
        band = (max(width, height) - short) / 2  # the part of the long side a centre crop cuts off
        if band > radius and rng.random() < OFF_CENTRE:
            along = rng.uniform(radius, band)
            along = along if rng.random() < 0.5 else max(width, height) - along
            cx, cy = (along, cy) if width > height else (cx, along)
        stretch = rng.uniform(0.7, 1.4)
        inside = ((xx - cx) / (radius * stretch)) ** 2 + ((yy - cy) / (radius / stretch)) ** 2 < 1
        shade = 0.75 + 0.25 * level / 255
        colour = np.array([rng.uniform(205, 245), rng.uniform(25, 110), rng.uniform(10, 50)]) * shade
        image[inside] = colour
    image += rng.standard_normal(image.shape).astype(np.float32) * 4
    return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _pictures(rng: np.random.Generator, rows: List[Dict]) -> Dict[str, bytes]:
    """image name -> bytes for the ads with a picture; broken ones are bytes that do not decode, missing ones absent."""
    with_image = [r for r in rows if r["_image"]]
    if not with_image:
        return {}
    order = rng.permutation(len(with_image))
    broken = {int(i) for i in order[:max(1, round(BROKEN * len(with_image)))]}
    missing = {int(i) for i in order[len(broken):len(broken) + max(1, round(MISSING * len(with_image)))]}
    pictures = {}
    for i, row in enumerate(with_image):
        width, height = _size(rng)
        data = _jpeg(render_picture(rng, row["_quality"], row["_object"], width, height), int(rng.integers(80, 96)))
        if i in missing:
            continue
        if i in broken:
            if rng.random() < 0.5:
                data = data[:int(len(data) * rng.uniform(0.3, 0.7))]  # a truncated download
            else:
                data = b"\x00\x00" + rng.bytes(int(rng.integers(200, 2000)))  # garbage
        pictures[row["image"]] = data
    return pictures


def _write_zip(path: str, folder: str, pictures: Dict[str, bytes]) -> None:
    """Kaggle's archive layout; fixed timestamps and order so the same pictures give the same bytes."""
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(pictures):
            info = zipfile.ZipInfo(f"{ZIP_PREFIX}/{folder}/{name}.jpg", date_time=(2018, 4, 25, 12, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, pictures[name])
    os.replace(tmp, path)


def write_sample(output: str, ads: int = 2000, seed: int = 0, zip_images: bool = False) -> Dict[str, str]:
    """Writes train.csv, test.csv, the pictures and the hidden test targets.

    Args:
        output: directory, created if missing.
        ads: ads in train and test together (at least 20); ~20 % go to test.
        seed: the same seed writes the same bytes.
        zip_images: write the pictures as Kaggle's `train_jpg.zip` / `test_jpg.zip` (holding
            data/competition_files/{train,test}_jpg/<image>.jpg) instead of the folders
            `train_jpg/` / `test_jpg/`.

    Returns:
        The paths written, by name: train_csv, test_csv, train_images, test_images (the
        folders, or the zips with `zip_images`) and test_truth (item_id,deal_probability of
        the test ads: the hidden truth, for scoring; Kaggle did not ship it).

    Example:

    >>> paths = write_sample("/tmp/avito_raw", ads=100, seed=1, zip_images=True)
    >>> os.path.basename(paths["train_images"])
    'train_jpg.zip'
    """
    if ads < MIN_ADS:
        raise ValueError(f"ads must be at least {MIN_ADS}, got {ads}")
    rng = np.random.default_rng(seed)
    taken: set = set()
    users = _users(rng, ads)
    rows = _ads(rng, users, _hex_ids(rng, len(users), 12, taken))
    for row, item_id in zip(rows, _hex_ids(rng, len(rows), 12, taken)):
        row["item_id"] = item_id
    for row in rows:
        row["image"] = _hex_ids(rng, 1, 64, taken)[0] if row["_image"] else ""
    test = np.zeros(len(rows), dtype=bool)
    test[rng.choice(len(rows), size=round(len(rows) * TEST_SHARE), replace=False)] = True
    splits = {"train": sorted((r for r, t in zip(rows, test) if not t), key=lambda r: r["item_id"]),
              "test": sorted((r for r, t in zip(rows, test) if t), key=lambda r: r["item_id"])}
    pictures = {split: _pictures(rng, split_rows) for split, split_rows in splits.items()}

    os.makedirs(output, exist_ok=True)
    paths = {"train_csv": os.path.join(output, "train.csv"), "test_csv": os.path.join(output, "test.csv")}
    for split in splits:
        folder = f"{split}_jpg"
        if zip_images:
            paths[f"{split}_images"] = os.path.join(output, folder + ".zip")
            _write_zip(paths[f"{split}_images"], folder, pictures[split])
        else:
            paths[f"{split}_images"] = os.path.join(output, folder)
            write_jpegs(paths[f"{split}_images"], pictures[split])
    write_csv(paths["train_csv"], TRAIN_COLUMNS, splits["train"])
    write_csv(paths["test_csv"], TEST_COLUMNS, splits["test"])
    # Kaggle keeps the test targets; the sample writes them aside so a quickstart can score
    # its submission (nothing in the pipeline reads this file).
    paths["test_truth"] = os.path.join(output, "test_truth.csv")
    write_csv(paths["test_truth"], TRUTH_COLUMNS, splits["test"])
    return paths


def find_words(text: str) -> Dict[str, bool]:
    """Which of the signal words (`WORD_PATTERNS`) a lower-cased title + description holds."""
    text = text.lower()
    return {word: re.search(pattern, text) is not None for word, pattern in WORD_PATTERNS.items()}
