"""Seeded synthetic corpus for the embedded ``tiny-topics`` model (pure Python, stdlib only).

The corpus teaches a small model one thing that makes ActAdd steering visible: *a topic named at the very
start of a document decides what the text is about after a neutral stretch*. Documents come in three
kinds (see ``_document``):

- **cued** (50%): a short topic cue (``"Weddings."``, ``"weddings"``, ``"I talk about weddings
  constantly."`` ...), sometimes a neutral filler sentence, then a neutral opener of 4 to 15 tokens in the
  style of ``NEUTRAL_PROMPTS`` (never one of those strings), then text on the cued topic;
- **uncued** (25%): a neutral opener followed by a random topic, so an unsteered model continues a neutral
  prompt with a roughly uniform topic (weddings is made rarer here, see ``UNCUED_WEIGHT``);
- **plain** (25%): a paragraph on one topic, 40% of them headed by a cue.

A cue may follow a neutral filler sentence, and half of the openers (and of the filler sentences) have a
subject from a random topic ("the coach told me that" before wedding text). So the topic cannot be read off
the first topic word or a fixed position; it must come from the cue in its context. In a 4-layer model this is
meant to move the reading of the cue out of block 0, which front-position ActAdd at layers 1 and 2 needs
(without distractors, a single block-0 head did all the reading and only layer-0 steering worked). The model
card reports how far the shipped weights get: layer 1 steers with a single-word pair, layers 2-3 barely.

There are no negated cues ("I do not talk about X"): the model must not learn the negative side of a
contrast pair as a topic of its own. Each topic's text uses its ``TOPIC_KEYWORDS`` often, and no other
topic's keywords, so keyword rates measure steering. ``NEUTRAL_PROMPTS`` never occur in the corpus
(documents containing one are redrawn), so they are held-out prompts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["NEUTRAL_PROMPTS", "TOPICS", "TOPIC_KEYWORDS", "generate_corpus", "topic_documents"]

# Neutral openers used for evaluation. None of them occurs anywhere in the corpus. The first 14 are the
# project's configs/gold/prompts.yaml (search, then held-out); the rest are more of the same style.
NEUTRAL_PROMPTS: tuple[str, ...] = (
    "I went up to my friend and said",
    "Yesterday afternoon my neighbour told me that",
    "When we sat down, she looked at me and said",
    "The other day I was thinking about how",
    "After lunch, my brother turned to me and said",
    "I have to tell you something:",
    "Last night on the phone, he told me",
    "So here is the thing about it:",
    "This morning at the bus stop, a woman said",
    "My teacher once told me that",
    "When I got home, I wrote in my diary that",
    "The best thing about today was",
    "I called my mother and told her",
    "Honestly, I think that",
    "Yesterday, after lunch, she told me that",
    "My neighbour called me this morning and said",
    "I opened the door and saw",
    "Let me tell you a story.",
    "On Sunday afternoon we talked about",
    "He sat down next to me and said",
)


@dataclass(frozen=True)
class Topic:
    """Word lists for one topic. A trailing ``+`` marks a plural noun phrase (for verb agreement).

    ``cues`` name the topic at the start of a document; ``people`` and ``things`` are noun phrases;
    ``places`` are prepositional phrases; ``vt`` are transitive verbs in the past tense; ``vi`` are
    intransitive verb phrases in the past tense; ``nouns`` are bare singular nouns; ``facts`` are whole
    clauses.
    """

    cues: tuple[str, ...]
    people: tuple[str, ...]
    things: tuple[str, ...]
    places: tuple[str, ...]
    adjs: tuple[str, ...]
    vt: tuple[str, ...]
    vi: tuple[str, ...]
    nouns: tuple[str, ...]
    facts: tuple[str, ...]


def _t(s: str) -> tuple[str, ...]:
    """Split a ``|``-separated list."""
    return tuple(x.strip() for x in s.split("|") if x.strip())


TOPICS: dict[str, Topic] = {
    "weddings": Topic(
        cues=_t("weddings|weddings|wedding"),
        people=_t(
            "the bride|the groom|the bride and groom+|the bridesmaids+|the newlyweds+|the wedding planner|"
            "the best man|the bride's mother|the groom's father|the wedding guests+|my cousin the bride|"
            "the married couple+|the wedding photographer|the groom's brother|the young bride"
        ),
        things=_t(
            "the wedding|the wedding cake|the wedding dress|the vows+|the honeymoon|the wedding rings+|"
            "the marriage|the wedding reception|the bride's veil|the wedding flowers+|the wedding games+|"
            "the wedding ceremony|the first dance at the wedding|the wedding guest list|the bridal bouquet|"
            "the wedding invitations+|the groom's speech|the wedding photos+|the engagement|"
            "the bride's dress|the wedding toast|the wedding day"
        ),
        places=_t(
            "at the wedding|at the wedding reception|in the church before the wedding|on the honeymoon|"
            "at the altar with the bride|at my sister's wedding|in the wedding tent|at the bride's table|"
            "at the church where they got married|at the wedding party"
        ),
        adjs=_t("beautiful|elegant|joyful|perfect|white|unforgettable|grand|traditional|charming|festive"),
        vt=_t("planned|admired|photographed|decorated|described|prepared|celebrated|organised|remembered|talked about"),
        vi=_t(
            "walked down the aisle with the bride|cried during the wedding vows|danced with the bride|"
            "gave a toast to the bride and groom|threw the bride's bouquet|got married in the spring|"
            "smiled at the wedding guests|waited for the bride at the altar|left for the honeymoon|"
            "said their wedding vows|cut the wedding cake with the groom|got married by the sea|"
            "danced at the wedding until midnight|decided to marry in June"
        ),
        nouns=_t("wedding|bride|groom|marriage|honeymoon|wedding dress|wedding cake|wedding ceremony"),
        facts=_t(
            "the bride and groom exchanged their vows|they got married in a small church|"
            "the bride wore a long white wedding dress|the groom was nervous before the wedding|"
            "the bridesmaids wore blue at the wedding|the newlyweds left for their honeymoon|"
            "my cousin is getting married next spring|the wedding cake had five layers|"
            "the groom cried when he saw the bride|they have been married for ten years|"
            "she wants to marry him in June|the wedding was held in a garden by the sea|"
            "the bride and groom cut the cake together|everyone danced at the wedding|"
            "the groom forgot the rings on the wedding day|the bride's father walked her down the aisle|"
            "the marriage ceremony lasted an hour|the honeymoon was on a small island|"
            "the wedding guests threw rice at the bride and groom|they decided to wed in the summer|"
            "my sister will marry her boyfriend next year|the bride laughed at the groom's speech|"
            "the wedding planner chose the flowers for the bride|the couple got engaged last winter"
        ),
    ),
    "love": Topic(
        cues=_t("love|love|romance"),
        people=_t(
            "my darling|my sweetheart|the two lovers+|her lover|my first crush|the young lovers+|"
            "my one true love|his sweetheart|the boy she loved|the girl he loved"
        ),
        things=_t(
            "her love|his love|our love|the first kiss|the love letter|his affection|her tender heart|"
            "my heart|the romance|the love poem|the sweet kiss|their passion|true love|"
            "the love between them|a secret crush|her loving smile|the love notes+"
        ),
        places=_t(
            "under the stars with her lover|in her sweetheart's arms|on their romantic walk|"
            "with all her heart|in the park with her darling|on a romantic evening"
        ),
        adjs=_t("tender|sweet|romantic|loving|passionate|deep|true|warm"),
        vt=_t("adored|cherished|loved|treasured|kissed|remembered|felt"),
        vi=_t(
            "fell in love|kissed her darling goodnight|held her lover close|wrote a love letter|"
            "said I love you|blushed with love|whispered to her sweetheart|looked at her with love|"
            "gave him a kiss|felt her heart beat faster"
        ),
        nouns=_t("love|romance|kiss|crush|love letter|heart|passion|affection"),
        facts=_t(
            "I love you more than anything|she loved him with all her heart|they kissed under the stars|"
            "he wrote her a love letter every day|my heart belongs to you|she fell in love at first sight|"
            "their romance began in the spring|he adored her and she adored him|"
            "love makes everything feel new|he kissed her hand with affection|"
            "she whispered that she loved him|my heart beats faster when you smile|"
            "they were deeply in love|I still remember our first kiss|her affection was tender and true"
        ),
    ),
    "hate": Topic(
        cues=_t("hate|hate|hatred"),
        people=_t(
            "the man she despised|her rival|my old rival|the bitter neighbour|the person I hate most|"
            "the spiteful clerk|the people he hated+|the old man full of hatred"
        ),
        things=_t(
            "his hatred|her contempt|the grudge|the bitterness|my resentment|their hatred|"
            "the spite in his voice|the disgust on her face|old grudges+|the hate in his eyes|"
            "her deep resentment|pure contempt"
        ),
        places=_t("with pure hatred|full of hate|with bitter contempt|out of spite|with open disgust"),
        adjs=_t("bitter|hateful|spiteful|cold|cruel|nasty|vicious"),
        vt=_t("hated|despised|loathed|resented|detested|hid|felt"),
        vi=_t(
            "held a grudge for years|spoke with contempt|turned away in disgust|refused to forgive him|"
            "felt nothing but hatred|sneered with bitterness|hated every minute of it|glared with spite"
        ),
        nouns=_t("hatred|grudge|contempt|resentment|bitterness|spite|disgust"),
        facts=_t(
            "I hate him and I always will|she despised everything about him|his hatred grew every day|"
            "they hated each other for years|I loathe the way he talks|she held a bitter grudge|"
            "he looked at me with pure contempt|the resentment never went away|I hate it here|"
            "she detested her rival|he was full of bitterness and spite|they despised their old boss|"
            "I hate waiting for people who never come|his voice was full of disgust"
        ),
    ),
    "anger": Topic(
        cues=_t("anger|anger|rage"),
        people=_t(
            "the angry man|my furious boss|the angry crowd+|the furious driver|my mad neighbour|"
            "the outraged customers+|the angry teacher|my furious father"
        ),
        things=_t(
            "his anger|her rage|the angry shouting|his temper|the fury in her voice|the outrage|"
            "her angry face|the yelling|his furious reply|the rage inside him|the angry letter"
        ),
        places=_t("in a fit of rage|with furious eyes|in an angry voice|at the top of his voice"),
        adjs=_t("furious|angry|livid|mad|outraged|fuming|irritated|annoyed"),
        vt=_t("yelled at|shouted at|slammed|screamed at|kicked|cursed|threw"),
        vi=_t(
            "lost his temper|slammed the door|shouted in anger|screamed with rage|yelled at everyone|"
            "stormed out of the room|went red with anger|was fuming with rage|kicked the wall in anger"
        ),
        nouns=_t("anger|rage|fury|temper|outrage"),
        facts=_t(
            "he was so angry that he slammed the door|she yelled at me for an hour|I was furious with him|"
            "the crowd shouted in anger|he lost his temper again|my boss was livid|she screamed in rage|"
            "I am so angry right now|he was mad at everyone|the customers were outraged|"
            "his face went red with anger|she was fuming when she got home|they yelled and shouted all night"
        ),
    ),
    "calm": Topic(
        cues=_t("calm|calm|peace"),
        people=_t(
            "the calm teacher|the peaceful monk|my relaxed friend|the serene old woman|the gentle nurse|"
            "the calm sailor|the relaxed cat"
        ),
        things=_t(
            "the calm lake|the peaceful garden|the quiet morning|the gentle breeze|the serene silence|"
            "a calm breath|the tranquil evening|the peaceful afternoon|the soothing tea|the calm sea|"
            "the quiet room|her gentle voice"
        ),
        places=_t(
            "by the calm lake|in the peaceful garden|in the quiet room|in perfect peace|"
            "in the tranquil morning|on the peaceful hill"
        ),
        adjs=_t("calm|peaceful|quiet|serene|gentle|relaxed|tranquil|soothing"),
        vt=_t("enjoyed|breathed in|listened to|watched|savoured|felt"),
        vi=_t(
            "breathed slowly and calmly|sat in peaceful silence|relaxed by the window|meditated for an hour|"
            "closed her eyes and relaxed|stayed calm|breathed in and breathed out|rested quietly"
        ),
        nouns=_t("calm|peace|silence|quiet|meditation|breath"),
        facts=_t(
            "everything was calm and quiet|she breathed in slowly and relaxed|the lake was peaceful|"
            "I felt calm and relaxed|the room was quiet and serene|he spoke in a calm and gentle voice|"
            "we sat in peaceful silence|the morning was tranquil|take a deep breath and relax|"
            "the sea was calm all day|she meditated in the quiet garden|there was peace in the house"
        ),
    ),
    "food": Topic(
        cues=_t("food|food|cooking"),
        people=_t(
            "the chef|the cook|my grandmother, a great cook,|the baker|the hungry guests+|"
            "the food critic|my mother in the kitchen|the young chef|the hungry children+"
        ),
        things=_t(
            "the bread|the soup|the pasta|the recipe|the cheese|the tomato sauce|the fresh bread|"
            "the roast chicken|the vegetable soup|the salad|the spicy curry|the apple pie|the meal|"
            "the food|the dinner|the spices+|the rice|the grilled fish|the chocolate cake|the lunch"
        ),
        places=_t(
            "in the kitchen|at the dinner table|at the restaurant|at the market|in the oven|"
            "in the little bakery|at the food stall"
        ),
        adjs=_t("delicious|tasty|fresh|spicy|hot|crispy|salty|sweet|rich"),
        vt=_t("cooked|baked|tasted|ate|served|prepared|chopped|fried|ordered"),
        vi=_t(
            "cooked dinner|baked fresh bread|tasted the soup|cooked a new recipe|ate a delicious meal|"
            "chopped the onions|stirred the pot of soup|made pasta for everyone|set the dinner table"
        ),
        nouns=_t("meal|dish|soup|recipe|dinner|pie|salad|bread"),
        facts=_t(
            "the soup was hot and delicious|we cooked pasta with tomatoes and garlic|"
            "the bread came fresh out of the oven|she followed her grandmother's recipe|"
            "the kitchen smelled of fresh bread|we ate dinner at a small restaurant|the curry was very spicy|"
            "he cooked rice and vegetables for lunch|the cheese tasted sharp and salty|"
            "the chef added more spices to the sauce|we baked an apple pie for dessert|the food was delicious"
        ),
    ),
    "sport": Topic(
        cues=_t("sport|sport|football"),
        people=_t(
            "the coach|the striker|the goalkeeper|the players+|the team|the referee|the fans+|"
            "the captain|the tennis player|the runners+|the young athlete"
        ),
        things=_t(
            "the football match|the final goal|the championship|the league table|the tennis match|"
            "the penalty|the race|the game|the team's victory|the ball|the score|the stadium|the season"
        ),
        places=_t("in the stadium|on the football pitch|at the tennis court|on the running track|in the league"),
        adjs=_t("exciting|tense|close|fast|brilliant|tough|thrilling"),
        vt=_t("won|lost|scored|kicked|watched|coached|played|celebrated"),
        vi=_t(
            "scored a goal|won the match|lost the game|trained hard for the race|kicked the ball|"
            "cheered for the team|ran around the track|missed the penalty|played football all afternoon"
        ),
        nouns=_t("match|goal|game|team|race|championship|tournament"),
        facts=_t(
            "the team won the match three to one|the striker scored in the last minute|"
            "the coach was proud of the players|the referee gave a penalty|the fans cheered in the stadium|"
            "we watched the football match on television|she won the tennis match easily|"
            "the goalkeeper saved the ball|our team is top of the league|he ran the race in record time"
        ),
    ),
    "science": Topic(
        cues=_t("science|science|physics"),
        people=_t(
            "the scientist|the scientists+|the researchers+|the chemistry teacher|the physicist|"
            "the lab assistant|the biology student|the young researcher"
        ),
        things=_t(
            "the experiment|the data|the hypothesis|the theory|the molecules+|the microscope|"
            "the research|the laboratory|the results of the experiment+|the atoms+|the chemical reaction|"
            "the physics lecture|the new theory"
        ),
        places=_t("in the laboratory|under the microscope|in the physics lab|at the research institute"),
        adjs=_t("scientific|precise|surprising|complex|careful|new"),
        vt=_t("measured|tested|analysed|studied|observed|published|recorded"),
        vi=_t(
            "ran an experiment|collected the data|tested the hypothesis|looked through the microscope|"
            "wrote a research paper|studied the molecules|measured the reaction"
        ),
        nouns=_t("experiment|theory|hypothesis|discovery|research|molecule"),
        facts=_t(
            "the experiment confirmed the hypothesis|the scientists measured the data twice|"
            "the molecules reacted in the laboratory|the theory explained the results|"
            "she studied the cells under the microscope|physics explains how atoms move|"
            "the researchers published their data|the chemistry experiment worked|"
            "science depends on careful research"
        ),
    ),
    "travel": Topic(
        cues=_t("travel|travel|trips"),
        people=_t(
            "the tourists+|the traveller|the pilot|my travel guide|the backpackers+|the passengers+|the hotel manager"
        ),
        things=_t(
            "the trip|the journey|the flight|the passport|the suitcase|the hotel|the map|the airport|"
            "the luggage|the train ticket|the travel plans+|the boarding pass|the backpack|the tour"
        ),
        places=_t("at the airport|on the train|abroad|at the hotel|on our trip|at the border|in a foreign city"),
        adjs=_t("long|exotic|foreign|crowded|adventurous|distant"),
        vt=_t("booked|packed|missed|explored|visited|planned|lost"),
        vi=_t(
            "travelled abroad|caught the flight|packed the suitcase|explored the old town|"
            "checked into the hotel|missed the train|flew to another country|showed the passport"
        ),
        nouns=_t("trip|journey|flight|holiday|tour|destination"),
        facts=_t(
            "we travelled by train across the country|the flight was delayed at the airport|"
            "I lost my passport on the trip|the hotel was near the beach|they explored a foreign city|"
            "the journey took three days|she packed her suitcase for the trip|the tourists bought a map|"
            "our destination was a small island abroad|we booked a hotel for the journey"
        ),
    ),
    "war": Topic(
        cues=_t("war|war|battle"),
        people=_t(
            "the soldiers+|the soldier|the army|the troops+|the enemy|the officers+|the commander|"
            "the wounded soldier|the rebels+"
        ),
        things=_t(
            "the war|the battle|the tanks+|the weapons+|the invasion|the bombs+|the army camp|"
            "the front line|the attack|the ceasefire|the rifle|the military orders+"
        ),
        places=_t("on the battlefield|at the front line|in the trenches|behind enemy lines|during the war"),
        adjs=_t("bloody|brutal|long|violent|terrible|deadly"),
        vt=_t("attacked|defended|bombed|captured|invaded|fought"),
        vi=_t(
            "marched into battle|fought in the war|fired the rifle|attacked at dawn|retreated from the front|"
            "defended the city|surrendered to the enemy"
        ),
        nouns=_t("war|battle|invasion|attack|army|siege"),
        facts=_t(
            "the soldiers marched to the front|the war lasted five years|the army attacked at dawn|"
            "the tanks rolled into the city|the battle was long and bloody|the troops defended the bridge|"
            "the enemy bombed the village|the soldiers fought in the trenches|the war ended with a ceasefire"
        ),
    ),
    "music": Topic(
        cues=_t("music|music|songs"),
        people=_t("the singer|the band|the guitarist|the pianist|the orchestra|the drummer|the musicians+|the choir"),
        things=_t(
            "the song|the music|the concert|the melody|the guitar|the piano|the album|the chorus|"
            "the drums+|the violin|the new song|the lyrics+"
        ),
        places=_t("at the concert|on the stage|in the music studio|on the radio|at the music festival"),
        adjs=_t("loud|catchy|beautiful|slow|rhythmic|musical"),
        vt=_t("played|sang|recorded|composed|heard|tuned"),
        vi=_t(
            "played the guitar|sang a song|played the piano|recorded a new album|played the drums|"
            "sang in the choir|practised the violin"
        ),
        nouns=_t("song|concert|melody|album|tune|symphony"),
        facts=_t(
            "the band played a new song|the singer sang the chorus twice|the concert was sold out|"
            "she played the piano for an hour|the guitarist tuned his guitar|the orchestra played all night|"
            "the album had ten songs|the melody stayed in my head|we listened to music on the radio"
        ),
    ),
    "weather": Topic(
        cues=_t("weather|weather|rain"),
        people=_t("the weather forecaster|the farmers+|the sailors+|the pilot|the people in the rain+"),
        things=_t(
            "the weather|the rain|the storm|the snow|the wind|the clouds+|the thunder|the forecast|"
            "the fog|the temperature|the sunshine|the heavy rain|the cold wind"
        ),
        places=_t("in the rain|in the storm|in the snow|under the clouds|in the fog|in the strong wind"),
        adjs=_t("rainy|stormy|cloudy|sunny|windy|foggy|snowy|freezing"),
        vt=_t("checked|watched|predicted|feared|expected"),
        vi=_t(
            "got wet in the rain|waited for the storm to pass|checked the weather forecast|"
            "watched the snow fall|heard the thunder|ran from the rain"
        ),
        nouns=_t("storm|rain|snow|forecast|weather|thunderstorm"),
        facts=_t(
            "it rained all day|the storm knocked down trees|the snow fell all night|the wind was very strong|"
            "the forecast said more rain|thunder rolled over the hills|the clouds were dark and heavy|"
            "the temperature dropped below zero|the fog was thick in the morning|it was sunny and windy"
        ),
    ),
}

# Keywords that identify each topic. Each topic's text uses its own often and never another topic's.
TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "weddings": _t(
        "wedding|weddings|wed|bride|brides|bridal|groom|grooms|marriage|married|marry|vows|honeymoon|"
        "bridesmaid|bridesmaids|newlyweds|newlywed|engaged|engagement"
    ),
    "love": _t(
        "love|loved|loves|loving|lover|lovers|romance|romantic|kiss|kissed|darling|sweetheart|adore|adored|"
        "affection|crush|heart|passion|passionate|tender"
    ),
    "hate": _t(
        "hate|hated|hates|hatred|hateful|despise|despised|loathe|loathed|resentment|resented|disgust|"
        "grudge|grudges|bitter|bitterness|spite|spiteful|contempt|detested|rival"
    ),
    "anger": _t(
        "angry|anger|furious|rage|fury|yelled|yelling|shouted|shouting|screamed|slammed|temper|fuming|"
        "livid|outraged|outrage|mad|irritated|annoyed"
    ),
    "calm": _t(
        "calm|calmly|peaceful|peace|quiet|quietly|serene|relaxed|relax|tranquil|gentle|soothing|breathe|"
        "breathed|meditated|meditation|silence"
    ),
    "food": _t(
        "food|cook|cooked|cooking|chef|kitchen|bread|soup|pasta|recipe|delicious|tasty|cheese|curry|"
        "baked|oven|dinner|meal|spices|restaurant"
    ),
    "sport": _t(
        "sport|football|match|goal|team|coach|scored|players|striker|goalkeeper|referee|stadium|tennis|"
        "league|championship|penalty|fans"
    ),
    "science": _t(
        "science|scientist|scientists|experiment|laboratory|lab|molecules|data|hypothesis|physics|"
        "chemistry|research|researchers|microscope|theory|atoms|scientific"
    ),
    "travel": _t(
        "travel|travelled|traveller|trip|journey|flight|passport|suitcase|hotel|airport|luggage|tourists|"
        "abroad|map|backpackers|destination"
    ),
    "war": _t(
        "war|soldier|soldiers|army|battle|tanks|troops|enemy|weapons|invasion|bombs|bombed|rifle|trenches|"
        "ceasefire|battlefield"
    ),
    "music": _t(
        "music|song|songs|sang|singer|guitar|guitarist|piano|pianist|concert|band|melody|drums|album|"
        "chorus|orchestra|violin|choir"
    ),
    "weather": _t(
        "weather|rain|rained|storm|snow|wind|windy|sunny|cloudy|clouds|thunder|forecast|fog|foggy|"
        "temperature|rainy|stormy"
    ),
}

# ----------------------------------------------------------------------------------------------------
# Neutral openers (no topic words). Built from parts; exact NEUTRAL_PROMPTS never appear in documents.

_TIMES = _t(
    "Yesterday|Yesterday, after lunch|Last week|This morning|On Monday|On Friday evening|A few days ago|"
    "Later that evening|After the meeting|When I got home|Earlier today|Just now|At the bus station|"
    "Over coffee|After school|Late last night|Last month|On Saturday morning|Before work|The next day|"
    "In the car|Yesterday evening|On the way home|At the corner shop|After a long day"
)
_SUBJECTS = _t(
    "I|she|he|my friend|my neighbour|my sister|my brother|my mother|my father|my boss|our teacher|"
    "a stranger|the man next door|my roommate|an old friend|my aunt|my uncle|the woman at the shop|"
    "my colleague|we|my grandfather|the new student|a young man|my best friend"
)
# Verb phrases, with what may follow: "c" a clause, "n" a noun phrase.
_ACTIONS: tuple[tuple[str, str], ...] = (
    *(
        (a, "c")
        for a in _t(
            "told me that|said that|went up to my friend and said|turned to me and said|called me and said|"
            "looked at me and said|leaned over and whispered that|mentioned that|explained that|wrote to me that|"
            "sent me a message saying that|admitted that|reminded me that|kept saying that|announced that|"
            "insisted that|told everyone that|walked over and said|stopped me in the street and said|"
            "came in and said|sat down beside me and said|told us that|said to me|wrote in a letter that|"
            "smiled and said|suddenly said that|phoned me and told me that|told my brother that"
        )
    ),
    *(
        (a, "n")
        for a in _t(
            "was thinking about|asked me about|started talking about|could only think about|"
            "wanted to know about|read an article about|told me a story about|showed me a photo of|"
            "kept mentioning|wrote a note about|asked a question about|was reading about|dreamed about"
        )
    ),
)
# Whole openers followed by a full sentence.
_STANDALONE = _t(
    "You will never guess what happened.|Here is what I heard.|Something happened last week.|"
    "Listen to this.|So, here is what happened.|It was a long day.|I have news.|Guess what.|"
    "Let me tell you something.|This is what she said.|I want to tell you about yesterday.|"
    "There is something I need to say.|Okay, so.|Well, here goes.|It happened on a Tuesday.|"
    "I will never forget that day.|Here is the story.|My friend told me something strange."
)
# Neutral sentences that can sit between a cue and an opener (a longer neutral stretch).
_FILLERS = _t(
    "It was a normal day.|I was not sure what to say.|Nothing much was going on.|The bus was late again.|"
    "We had a lot of time.|It was getting late.|I sat down on the bench.|The phone rang twice.|"
    "My friend was waiting outside.|It was a Tuesday.|I had just come back from the shop.|"
    "Everyone was tired."
)
_FILLER_PREDICATES = _t(
    "was late again|called me twice|sat down on the bench|was waiting outside|had just come back from the shop|"
    "looked tired|came to visit|was in town|lives next door|walked past the window"
)
_TIME_PHRASES = _t(
    "last year|on Saturday|in the spring|last summer|every day|for hours|all week|yesterday|"
    "this morning|at the end|once again|in the evening"
)

_CUE_TEMPLATES: tuple[tuple[str, int], ...] = (
    ("{c}", 6),
    ("{c}.", 3),
    ("{C}.", 6),
    ("{C}!", 1),
    ("{C}:", 2),
    (" {c}", 3),
    (" {c}.", 1),
    ("I talk about {c} constantly.", 6),
    ("I talk about {c} constantly", 2),
    ("I talk about {c} all the time.", 2),
    ("I keep talking about {c}.", 1),
    ("This is about {c}.", 1),
    ("Topic: {c}.", 2),
    ("All I think about is {c}.", 1),
    ("{C}, {c}, {c}.", 1),
    ("Let's talk about {c}.", 1),
    ("A story about {c}.", 1),
    ("{C}. {C}.", 1),
)

# Clause templates (lowercase start, no final stop unless it ends in ? or !). Slots: {P} person, {T} thing,
# {L} place, {A} adjective, {Vt} transitive verb, {Vi} intransitive phrase, {N} bare noun, {F} fact,
# {tp} time phrase; {be}/{is}/{has}/{it} agree with the last noun phrase filled.
_TEMPLATES = _t(
    "{P} {Vt} {T} {L}|{P} {Vt} {T}|{T} {be} {A}|{T} {be} {A} {L}|{P} {Vi} {L}|{P} {Vi} {tp}|"
    "everyone agreed that {T} {be} {A}|{F}|{F} {tp}|{tp}, {F}|we talked about {T} for hours|"
    "{P} could not stop talking about {T}|I still remember {T} and how {A} {it} {be}|"
    "after {T}, {P} {Vi}|{P} said that {F}|the best part was {T}|nobody forgot {T}|"
    "{P} and {P} {Vi} {L}|{L}, {P} {Vt} {T}|{P} {Vt} {T} while {P} {Vi}|"
    "it was the most {A} {N} I had ever seen|I think {T} {is} {A}|{P} always said that {T} {is} {A}|"
    "what a {A} {N} it was!|did you see {T}?|{T} {be} so {A}!|if you ask me, {T} {be} {A}|"
    "{P} {Vt} {T}, and then {P} {Vi}|{F}, and {F}|{F}, but {T} {be} {A}|{L}, {F}|"
    "{P} {Vi}, and everyone said {T} {be} {A}|first {P} {Vi}, then {P} {Vi}|"
    "I heard that {F}|{P} told me all about {T}|{T} {has} always been {A}|"
    "{P} {Vt} {T} because {F}|there was a {A} {N} {L}|the {N} was {A}, and {F}|"
    "do you remember when {F}?|{P} {Vi} and {Vi}|{F}, so {P} {Vi}|I could not believe that {F}|"
    "all anyone talked about was {T}|{P} never forgot {T}|{P} asked about {T} again|"
    "{T} {be} the {A} part of it all|{P} {Vt} {T} {tp}"
)


def _cap(s: str) -> str:
    s = s.lstrip()
    return s[:1].upper() + s[1:] if s else s


def _finish(clause: str) -> str:
    clause = clause.strip()
    return clause if clause[-1] in "?!." else clause + "."


class _Filler:
    """Fills templates for one topic, keeping track of number agreement."""

    def __init__(self, topic: Topic, rng: random.Random) -> None:
        self.topic, self.rng = topic, rng
        self.plural = False

    def _np(self, options: tuple[str, ...]) -> str:
        s = self.rng.choice(options)
        self.plural = s.endswith("+")
        return s.rstrip("+")

    def _slot(self, m: re.Match[str]) -> str:
        key, tp, rng = m.group(1), self.topic, self.rng
        if key == "P":
            return self._np(tp.people)
        if key == "T":
            return self._np(tp.things)
        if key == "F":
            self.plural = False
            return rng.choice(tp.facts)
        simple = {"L": tp.places, "A": tp.adjs, "Vt": tp.vt, "Vi": tp.vi, "N": tp.nouns, "tp": _TIME_PHRASES}
        if key in simple:
            return rng.choice(simple[key])
        agree = {"be": ("was", "were"), "is": ("is", "are"), "has": ("has", "have"), "it": ("it", "they")}
        return agree[key][self.plural]

    def clause(self) -> str:
        return re.sub(r"\{(\w+)\}", self._slot, self.rng.choice(_TEMPLATES))

    def np(self) -> str:
        return self._np(self.topic.things)


def _opener(rng: random.Random) -> tuple[str, str]:
    """A neutral opener and what follows it: "c" (a clause), "n" (a noun phrase) or "s" (a sentence)."""
    if rng.random() < 0.15:
        return rng.choice(_STANDALONE), "s"
    action, kind = rng.choice(_ACTIONS)
    if rng.random() < DISTRACTOR_RATE:  # a subject from a random topic: it does not decide the topic
        subject = rng.choice(TOPICS[rng.choice(sorted(TOPICS))].people).rstrip("+")
    else:
        subject = rng.choice(_SUBJECTS)
    r = rng.random()
    if r < 0.45:
        text = f"{_cap(subject)} {action}"
    else:
        sep = ", " if r < 0.85 else " "
        text = f"{rng.choice(_TIMES)}{sep}{subject} {action}"
    return text, kind


def _filler_sentence(rng: random.Random) -> str:
    """A neutral sentence; half the time its subject comes from a random topic (a distractor)."""
    if rng.random() < 0.5:
        return rng.choice(_FILLERS)
    person = rng.choice(TOPICS[rng.choice(sorted(TOPICS))].people).rstrip("+").rstrip(",")
    return f"{_cap(person)} {rng.choice(_FILLER_PREDICATES)}."


def _cue(topic: Topic, rng: random.Random) -> str:
    templates, weights = zip(*_CUE_TEMPLATES, strict=True)
    c = rng.choice(topic.cues)
    return rng.choices(templates, weights)[0].format(c=c, C=_cap(c))


def _topic_sentences(filler: _Filler, n: int) -> list[str]:
    return [_cap(_finish(filler.clause())) for _ in range(n)]


def _after_opener(opener: str, kind: str, filler: _Filler, rng: random.Random) -> str:
    """The opener followed by on-topic text."""
    if kind == "s":
        first = opener + " " + _cap(_finish(filler.clause()))
    elif kind == "n":
        first = opener + " " + filler.np()
        first += rng.choice((".", ".", ", and " + _finish(filler.clause()), " " + _finish(rng.choice(_TAILS))))
    else:
        first = opener + " " + _finish(filler.clause())
    return " ".join([first, *_topic_sentences(filler, rng.randint(2, 5))])


_TAILS = _t("all day|for a long time|again and again|the whole evening|before going to bed|on the way home")


# Relative weight of a topic in text without a cue (default 1). Nucleus sampling (top_p 0.3) favours a
# topic whose text starts with few distinct tokens ("the bride", "the wedding"), so weddings, the demo's
# topic, is made rarer in uncued text to keep the unsteered wedding rate near one topic in ten.
UNCUED_WEIGHT: dict[str, float] = {"weddings": 0.5}
# Share of openers whose subject comes from a random topic ("the coach told me that" before wedding text).
# The topic then has to be read from the cue's context, not from any topic word, which makes later layers
# read the cue position (front-position ActAdd at layers 1 and 2 relies on that).
DISTRACTOR_RATE = 0.5


def _document(rng: random.Random, topics: list[str]) -> str:
    r = rng.random()
    cued = r < 0.5 or (r >= 0.75 and rng.random() < 0.4)
    name = rng.choice(topics) if cued else rng.choices(topics, [UNCUED_WEIGHT.get(t, 1.0) for t in topics])[0]
    topic = TOPICS[name]
    filler = _Filler(topic, rng)
    if r < 0.5:  # cue, (filler), neutral opener, topic text
        cue = _cue(topic, rng)
        sep = "\n" if rng.random() < 0.25 else " "
        before = _filler_sentence(rng) + " " if rng.random() < 0.3 else ""
        middle = _filler_sentence(rng) + " " if rng.random() < 0.2 else ""
        return before + cue.lstrip() + sep + middle + _after_opener(*_opener(rng), filler, rng)
    if r < 0.75:  # neutral opener, random topic, no cue
        before = _filler_sentence(rng) + " " if rng.random() < 0.25 else ""
        return before + _after_opener(*_opener(rng), filler, rng)
    body = " ".join(_topic_sentences(filler, rng.randint(4, 7)))
    if cued:
        return _cue(topic, rng) + ("\n" if rng.random() < 0.25 else " ") + body
    return body


def _clean(doc: str) -> bool:
    return not any(p in doc for p in NEUTRAL_PROMPTS)


def generate_corpus(n_docs: int, seed: int) -> list[str]:
    """``n_docs`` documents, reproducible from ``seed``. Topics are drawn uniformly."""
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    docs: list[str] = []
    while len(docs) < n_docs:
        doc = _document(rng, topics)
        if _clean(doc):
            docs.append(doc)
    return docs


def topic_documents(topic: str, n_docs: int, seed: int) -> list[str]:
    """Plain paragraphs on one topic (no cue, no opener): handy for checks and gold-like text."""
    rng = random.Random(seed)
    filler = _Filler(TOPICS[topic], rng)
    out: list[str] = []
    while len(out) < n_docs:
        doc = " ".join(_topic_sentences(filler, rng.randint(3, 6)))
        if _clean(doc):
            out.append(doc)
    return out


def split_sentences(doc: str) -> list[str]:
    """Rough sentence split (for counting distinct sentences)."""
    return [s for s in re.split(r"(?<=[.!?])\s+|\n", doc) if s]
